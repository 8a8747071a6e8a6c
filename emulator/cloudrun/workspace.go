package cloudrun

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// workspaceScript runs as root in the task's new mount namespace: it binds
// the task's own directory ($2) over the workspace path ($1), enters it
// and becomes the task, as uid $3 and gid $4 with no other groups. The
// mount is private to the namespace, so tasks never see each other's.
const workspaceScript = `set -e; mkdir -p "$1"; mount --bind "$2" "$1"; cd "$1"; u=$3 g=$4; shift 4; ` +
	`exec setpriv --reuid="$u" --regid="$g" --clear-groups --pdeathsig KILL -- "$@"`

// workspaceTools are the programs workspaceScript needs.
var workspaceTools = []string{"unshare", "mount", "setpriv", "sh"}

// CheckWorkspace reports why Config.Workspace cannot work on this machine,
// or nil: the server must be root (to make mount namespaces) and the
// tools must be installed.
func CheckWorkspace() error {
	if os.Geteuid() != 0 {
		return errors.New("a task workspace needs root, to give each task a mount namespace")
	}
	for _, tool := range workspaceTools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("a task workspace needs %s (util-linux): %w", tool, err)
		}
	}
	return nil
}

// workspaceWrapper returns the program and arguments that run the task
// path with argv through workspaceScript.
func workspaceWrapper(workspace, own string, u *syscall.Credential, path string, argv []string) (string, []string) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		unshare = "unshare" // the start fails and says so
	}
	args := []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", workspaceScript, "sh",
		workspace, own, strconv.FormatUint(uint64(u.Uid), 10), strconv.FormatUint(uint64(u.Gid), 10), path}
	if len(argv) > 1 {
		args = append(args, argv[1:]...)
	}
	return unshare, args
}
