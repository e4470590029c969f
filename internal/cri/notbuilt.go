package cri

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// notBuilt answers Unimplemented for work on an existing object that a later
// issue builds, after the RPC has validated its input and found the object.
func notBuilt(what string, issue int) error {
	return fmt.Errorf("%s is not built yet (issue #%d): %w", what, issue, errdefs.ErrNotImplemented)
}
