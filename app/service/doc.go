// Package service installs, controls and answers studio-worker's own service: a systemd user
// unit on Linux, a LaunchAgent on macOS (both in the user's session, never needing sudo), and a
// Windows service, through kardianos/service, which no other package imports. It knows the
// command line the service runs ("run --config <file>", plus WindowsFlag on Windows) and nothing
// else of the worker: not its config, its CLI, nor package app, which imports it. What `run` does
// as the body of a Windows service is handed in as a Body of plain functions.
package service
