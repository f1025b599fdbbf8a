package vision

import (
	"os"
	"os/exec"
	"syscall"
)

// nsTry is a set of namespaces to start the worker in. The zero value
// tries them all first.
type nsTry struct {
	set  bool
	net  bool
	pid  bool
	none bool
}

// candidates are the sets to try in order: all of them; then without the
// PID namespace (the unit's RestrictNamespaces allows user and net only,
// and a cgroup stands in); then none (a container that forbids them; the
// filter still refuses every socket). After a start, the set that worked
// is tried first.
func (n nsTry) candidates() []nsTry {
	all := []nsTry{{set: true, net: true, pid: true}, {set: true, net: true}, {set: true, none: true}}
	if !n.set {
		return all
	}
	for i, c := range all {
		if c == n {
			return all[i:]
		}
	}
	return all
}

// names lists the namespaces of the set, user included when the daemon is
// not root (the others need it then).
func (n nsTry) names() []string {
	var out []string
	if !n.set || n.none {
		return out
	}
	if os.Geteuid() != 0 {
		out = append(out, "user")
	}
	if n.net {
		out = append(out, "net")
	}
	if n.pid {
		out = append(out, "pid")
	}
	return out
}

// setProcAttr puts the worker in its own process group and has the kernel
// kill it if the daemon dies first. With try.net it also gets a network
// namespace of its own, with nothing but a loopback interface that is
// down: the process that decodes untrusted images and sees every face
// cannot open a connection anywhere, whatever an exploit makes it do. With
// try.pid it is the first process of a PID namespace of its own: when it
// dies the kernel kills everything it started, even a child in a session
// of its own. As root that takes the namespaces alone; otherwise a user
// namespace mapping the daemon's own ids to themselves as well.
func setProcAttr(cmd *exec.Cmd, try nsTry) {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if try.net {
		attr.Cloneflags |= syscall.CLONE_NEWNET
	}
	if try.pid {
		attr.Cloneflags |= syscall.CLONE_NEWPID
	}
	if attr.Cloneflags != 0 {
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
