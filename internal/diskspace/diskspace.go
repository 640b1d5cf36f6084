// Package diskspace says how much room is left for the worker's files on the disk that holds a
// folder, each OS its own way, so admission can stop taking jobs before a full disk makes every
// result fail. It must not decide anything: the caller compares.
package diskspace

import "errors"

// ErrUnknown is returned where the OS gives no answer the package can read.
var ErrUnknown = errors.New("diskspace: free space cannot be read here")
