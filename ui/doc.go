// Package ui is the Studio Worker's desktop face: the Fyne window (dashboard, logs, settings) and
// the tray icon and menu.
//
// It sees the worker only through app.Source (a State snapshot, then States and Notices) and
// app.Controller (every action), so it works the same in-process and attached to a worker that
// runs as a service. It must not know about the session, the engines' internals or the GPU probe:
// it never imports session/, gpu/ or engine/ beyond the engine config types that app.Settings
// carries. State flows one way: subscription -> widgets; widgets -> Controller, on a goroutine, so
// the UI never waits on the network.
package ui
