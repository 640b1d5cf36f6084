// Package app is the worker itself, between the session (the wire), the engines (the backends),
// the GPU watch and the window: the Worker that owns every job from offer to end (ledger, lease),
// the mode and the State it publishes to the window, the creator's commands, the config file, the
// control channel that lets a window or the CLI attach to a running worker, and the command line.
//
// It must not know how the window draws (package ui imports app, never the reverse), how the hub
// is built (the demo's hub comes in through DemoHub from package main), or the wire's frames
// (package session owns them).
package app
