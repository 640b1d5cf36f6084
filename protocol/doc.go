// Package protocol holds the wire types and the codec of the Studio worker protocol, version 1
// (PROTOCOL.md at the repository root; the contract is shared/spec/protocol-v1.md).
//
// Both ends use it: session/ (the worker) and hub/ (the reference hub). It must not know about
// sockets, engines, GPUs, storage or the UI: it turns frames into bytes and bytes into frames,
// and says precisely what is wrong with a frame that does not follow the contract.
package protocol
