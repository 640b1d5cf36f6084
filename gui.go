package main

import "studioworker/app"

// gui opens the window; nil until the ui package lands.
var gui app.GUIFunc
