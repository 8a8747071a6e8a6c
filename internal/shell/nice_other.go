//go:build !linux

package shell

import "os/exec"

// CommandNice is the nice value a session's commands start with on Linux;
// elsewhere they start at the host's own.
const CommandNice = 0

func startNiced(c *exec.Cmd) error { return c.Start() }
