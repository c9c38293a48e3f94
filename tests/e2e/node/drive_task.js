#!/usr/bin/env node
// A Node.js Baton client built from protos/ alone: @grpc/proto-loader reads protos/baton/v1/*.proto (the protobuf
// well-known types come with protobufjs), google.rpc.Status and its details come from google-proto-files.
//
//   node drive_task.js TARGET API_KEY [NAMESPACE]
//
// Registers a two-step handler (a -> b), creates a task, works its steps as a worker (PollSteps, CompleteStep) until
// the task is COMPLETED, then checks the error path, and prints one JSON summary on stdout (tests/e2e/
// test_node_client.py asserts on it). Any unexpected failure prints a message on stderr and exits 1.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");
const googleProtoFiles = require("google-proto-files");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "..", "protos");
const CALL_SECONDS = 10;
const OVERALL_SECONDS = 60;

function loadBaton() {
  const dir = path.join(PROTO_ROOT, "baton", "v1");
  const files = fs
    .readdirSync(dir)
    .filter((name) => name.endsWith(".proto"))
    .sort()
    .map((name) => `baton/v1/${name}`);
  const definition = protoLoader.loadSync(files, {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return { files, baton: grpc.loadPackageDefinition(definition).baton.v1 };
}

// google.rpc.Status and the standard error details, to decode the grpc-status-details-bin trailer.
function loadRpcTypes() {
  const root = new protobuf.Root();
  const googleDir = path.dirname(googleProtoFiles.getProtoPath());
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(googleDir, target));
  root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
  return {
    status: root.lookupType("google.rpc.Status"),
    detail: (typeUrl) => root.lookupType(typeUrl.slice(typeUrl.lastIndexOf("/") + 1)),
  };
}

// google.protobuf.Struct <-> plain JSON (proto-loader gives Struct as its fields, not as JSON).
function toValue(value) {
  if (value === null) return { nullValue: "NULL_VALUE" };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([key, value]) => [key, toValue(value)])) };
}

function fromValue(value) {
  switch (value.kind) {
    case "nullValue":
      return null;
    case "numberValue":
    case "stringValue":
    case "boolValue":
      return value[value.kind];
    case "listValue":
      return (value.listValue.values || []).map(fromValue);
    case "structValue":
      return fromStruct(value.structValue);
    default:
      return undefined;
  }
}

function fromStruct(struct) {
  if (!struct) return null;
  return Object.fromEntries(Object.entries(struct.fields || {}).map(([key, value]) => [key, fromValue(value)]));
}

function deadline(seconds = CALL_SECONDS) {
  return new Date(Date.now() + seconds * 1000);
}

function call(client, method, request, metadata, seconds = CALL_SECONDS) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: deadline(seconds) }, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

// A call expected to fail: its status code name, message and decoded google.rpc.Status details.
async function failure(client, method, request, metadata, rpcTypes) {
  try {
    await call(client, method, request, metadata);
  } catch (error) {
    const raw = error.metadata ? error.metadata.get("grpc-status-details-bin") : [];
    let statusDetails = null;
    if (raw.length > 0) {
      const status = rpcTypes.status.toObject(rpcTypes.status.decode(raw[0]), { enums: String });
      statusDetails = {
        code: status.code,
        message: status.message,
        details: (status.details || []).map((any) => ({
          type_url: any.type_url,
          ...rpcTypes.detail(any.type_url).toObject(rpcTypes.detail(any.type_url).decode(any.value)),
        })),
      };
    }
    return { code: grpc.status[error.code], message: error.details, status_details: statusDetails };
  }
  throw new Error(`${method} unexpectedly succeeded`);
}

async function main() {
  const [target, apiKey, namespace = "node-e2e"] = process.argv.slice(2);
  if (!target || !apiKey) {
    console.error("usage: node drive_task.js TARGET API_KEY [NAMESPACE]");
    process.exit(2);
  }
  const stopAt = Date.now() + OVERALL_SECONDS * 1000;
  const { files, baton } = loadBaton();
  const rpcTypes = loadRpcTypes();
  const credentials = grpc.credentials.createInsecure();
  const handlers = new baton.HandlerService(target, credentials);
  const tasks = new baton.TaskService(target, credentials);
  const workers = new baton.WorkerService(target, credentials);
  const auth = new grpc.Metadata();
  auth.set("x-api-key", apiKey);

  const handler = await call(
    handlers,
    "RegisterHandler",
    {
      handler: {
        namespace,
        name: "node-pipeline",
        version: "1.0.0",
        description: "registered by tests/e2e/node/drive_task.js",
        steps: [
          { name: "a", step_handler: "node.a" },
          { name: "b", step_handler: "node.b", depends_on: ["a"], retry_policy: { max_attempts: 2 } },
        ],
      },
    },
    auth,
  );

  const createRequest = {
    namespace,
    handler_name: "node-pipeline",
    context: toStruct({ order_id: 42, customer: "node", items: ["x", "y"] }),
    tags: ["node"],
    request_id: "node-e2e-task-1",
  };
  const created = await call(tasks, "CreateTask", createRequest, auth);
  const again = await call(tasks, "CreateTask", createRequest, auth);

  // Work the steps as a worker until nothing is left to lease.
  const worked = [];
  const dependencyResults = {};
  let leased = null;
  while (worked.length < 2) {
    if (Date.now() > stopAt) throw new Error(`gave up after ${OVERALL_SECONDS}s with steps ${JSON.stringify(worked)}`);
    const poll = await call(
      workers,
      "PollSteps",
      {
        namespace,
        step_handlers: ["node.a", "node.b"],
        worker_id: "node-worker-1",
        max_steps: 4,
        max_wait: { seconds: 2, nanos: 0 },
      },
      auth,
      15,
    );
    for (const lease of poll.leases) {
      leased = leased || { context: fromStruct(lease.context), fencing_token: lease.fencing_token };
      dependencyResults[lease.step_name] = Object.fromEntries(
        Object.entries(lease.dependency_results || {}).map(([name, struct]) => [name, fromStruct(struct)]),
      );
      const completion = await call(
        workers,
        "CompleteStep",
        {
          worker_id: "node-worker-1",
          completions: [
            {
              lease: { step_id: lease.step_id, fencing_token: lease.fencing_token },
              result: toStruct({ done_by: "node", step: lease.step_name, attempt: lease.attempt }),
            },
          ],
        },
        auth,
      );
      const outcome = completion.outcomes[0];
      worked.push({
        step: lease.step_name,
        task_id: lease.task_id,
        attempt: lease.attempt,
        outcome_code: outcome.code,
        outcome_state: outcome.step_state,
      });
    }
  }

  const task = await call(tasks, "GetTask", { id: created.id }, auth);

  const errorMetadata = new grpc.Metadata();
  errorMetadata.set("x-api-key", apiKey);
  errorMetadata.set("x-request-id", "node-e2e-missing-task");
  const notFound = await failure(tasks, "GetTask", { id: "does-not-exist" }, errorMetadata, rpcTypes);
  const unauthenticated = await failure(tasks, "GetTask", { id: created.id }, new grpc.Metadata(), rpcTypes);

  for (const client of [handlers, tasks, workers]) client.close();
  const summary = {
    proto_files: files,
    handler: { name: handler.name, version: handler.version, steps: handler.steps.map((step) => step.name) },
    created: { id: created.id, state: created.state },
    idempotent_retry_same_id: again.id === created.id,
    first_lease: leased,
    worked,
    dependency_results: dependencyResults,
    task: {
      id: task.id,
      state: task.state,
      context: fromStruct(task.context),
      steps: Object.fromEntries(
        task.steps.map((step) => [step.name, { state: step.state, attempts: step.attempts, result: fromStruct(step.result) }]),
      ),
    },
    not_found: notFound,
    unauthenticated,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

main().catch((error) => {
  const code = error && error.code !== undefined ? ` (${grpc.status[error.code]})` : "";
  console.error(`drive_task.js: ${error && error.stack ? error.stack : error}${code}`);
  process.exit(1);
});
