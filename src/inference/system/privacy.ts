// onnxruntime (1.30, 1.31) starts a telemetry system in every process that creates a session: it writes
// ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db} and queues events for
// upload. MajicFLUX is local and offline, so it is off unless the user sets ORT_DISABLE_TELEMETRY
// themselves. The native library reads the variable from the real process environment when its
// environment is created: this module has no imports, so importing it first in an entry point
// (cli.ts, server.ts, pipelineWorker.ts, bench) runs this line before onnxruntime-node is loaded.
// Only a main thread's assignment reaches the C environment (a worker's process.env is a copy).
if (process.env.ORT_DISABLE_TELEMETRY === undefined) process.env.ORT_DISABLE_TELEMETRY = '1';

export {};
