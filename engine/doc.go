// Package engine runs one job of a kind (llm, image, tts, stt, video) on the inference backend the
// creator configured for that kind: the built-in synthetic backend (no GPU, for demos, tests and
// benchmarks), any OpenAI-compatible server (Ollama, llama.cpp server, vLLM, LocalAI, LM Studio,
// whisper.cpp's server), ComfyUI, or a command-line program.
//
// A Router picks the backend per kind, validates the job's input, classifies failures as
// retryable or not, and keeps the capabilities (kinds and models per kind) discovered from the
// backends. A binary result is always a file written inside the job's spool folder, never a whole
// file held in memory.
//
// The package must not know about the WebSocket session, the hub, GPUs or the UI: it is handed a
// job and a progress callback and returns a result or a classified error.
package engine
