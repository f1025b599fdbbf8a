package vision

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts the worker in its own process group, so a kill reaches
// it alone, and has the kernel kill it if the daemon dies first. With
// isolate it also gets a network namespace of its own, with nothing but a
// loopback interface that is down: the process that decodes untrusted
// images and sees every face cannot open a connection anywhere, whatever
// an exploit makes it do. As root that takes CLONE_NEWNET alone; otherwise
// a user namespace mapping the daemon's own ids to themselves as well.
func setProcAttr(cmd *exec.Cmd, isolate bool) {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if isolate {
		attr.Cloneflags = syscall.CLONE_NEWNET
		if uid, gid := os.Geteuid(), os.Getegid(); uid != 0 {
			attr.Cloneflags |= syscall.CLONE_NEWUSER
			attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
			attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
		}
	}
	cmd.SysProcAttr = attr
}

func killProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Process.Kill()
}
