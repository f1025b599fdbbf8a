package vision

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Confinement is what holds the vision worker in, as the launcher
// reported it before the worker's first instruction and as the client
// started it. It is never taken from the worker, which may lie.
type Confinement struct {
	// Checked is false until a launcher has run: the worker starts on
	// demand; Probe runs the launcher alone at once.
	Checked bool `json:"checked"`
	// Refused says why no worker may run ("" when one may): the kernel
	// has no Landlock, the filter could not be loaded. Requests then fail
	// with ErrUnconfined, and health says this.
	Refused string `json:"refused,omitempty"`
	// Landlock is the Landlock ABI in force; 0: none.
	Landlock int `json:"landlock_abi"`
	// Seccomp: the allow-list filter (native architecture only) is in force.
	Seccomp bool `json:"seccomp"`
	// Namespaces are those the worker has of its own: "net" (no
	// network), "pid" (it dies with everything it started), "user"
	// (needed for the others when the daemon is not root).
	Namespaces []string `json:"namespaces"`
	// UID the worker runs as: the daemon's own (the unit's
	// NoNewPrivileges and empty capability set forbid a switch).
	UID int `json:"uid"`
	// Cgroup: it runs in a cgroup of its own (memory bound, and killed
	// whole when stopped).
	Cgroup bool `json:"cgroup"`
}

// Confined reports whether a worker runs confined: checked, not refused,
// with Landlock and the filter in force.
func (c Confinement) Confined() bool {
	return c.Checked && c.Refused == "" && c.Landlock > 0 && c.Seccomp
}

// Layers names each layer in force, for logs, metrics and status (never
// "sandboxed" for one that is not).
func (c Confinement) Layers() map[string]string {
	m := map[string]string{}
	if c.Landlock > 0 {
		m["landlock"] = "abi " + strconv.Itoa(c.Landlock)
	}
	if c.Seccomp {
		m["seccomp"] = "allow-list, native architecture only"
	}
	for _, ns := range c.Namespaces {
		m["namespace_"+ns] = "own"
	}
	if c.Checked {
		m["uid"] = strconv.Itoa(c.UID) + " (the daemon's)"
	}
	if c.Cgroup {
		m["cgroup"] = "own"
	}
	return m
}

// String says it in one line.
func (c Confinement) String() string {
	switch {
	case !c.Checked:
		return "not checked yet"
	case c.Refused != "":
		return "refused: " + c.Refused
	case !c.Confined():
		return fmt.Sprintf("unconfined (namespaces %s)", strings.Join(c.Namespaces, ","))
	}
	return fmt.Sprintf("landlock abi %d, seccomp allow-list, namespaces %s, uid %d", c.Landlock, strings.Join(c.Namespaces, ","), c.UID)
}

// Confinement returns what holds the last worker (or probe) in.
func (c *Client) Confinement() Confinement {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	conf := c.conf
	conf.Namespaces = append([]string(nil), conf.Namespaces...)
	return conf
}

func (c *Client) setConfinement(conf Confinement) {
	c.statsMu.Lock()
	c.conf = conf
	c.statsMu.Unlock()
}

// Probe runs the launcher alone (it confines itself, reports and exits,
// starting no worker) and records what it could put in force, so health
// can tell before the first request whether a worker may run. Without a
// launcher it records an unconfined worker.
func (c *Client) Probe(ctx context.Context) (Confinement, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Confinement{}, ErrClosed
	}
	if c.cfg.Launcher == "" {
		conf := Confinement{Checked: true, Namespaces: c.ns.names(), UID: os.Getuid(), Cgroup: c.cfg.Cgroup != nil}
		c.setConfinement(conf)
		return conf, nil
	}
	w, err := startWorker(c.cfg, &c.ns, "probe")
	if err != nil {
		return Confinement{}, fmt.Errorf("%w: %v", ErrStart, err)
	}
	conf, err := w.confinement(c.cfg, c.ns)
	w.kill()
	w.closePipes()
	<-w.done
	if err != nil {
		return Confinement{}, fmt.Errorf("%w: %v", ErrStart, err)
	}
	c.setConfinement(conf)
	if conf.Refused != "" {
		c.refused = time.Now()
	}
	return conf, nil
}

// launcherCommand is how the client starts the worker confined; with no
// path the launcher confines itself, reports and exits (a probe).
func launcherCommand(launcher string, sb Sandbox, path string, args []string) (string, []string) {
	policy, _ := json.Marshal(sb)
	argv := []string{LauncherArg, string(policy), "--"}
	if path != "" {
		argv = append(append(argv, path), args...)
	}
	return launcher, argv
}

// reportFD is the launcher's descriptor for its report (cmd.ExtraFiles[0]).
const reportFD = 3

// launchReport is what the launcher tells the daemon before the exec.
type launchReport struct {
	Landlock int    `json:"landlock_abi,omitempty"`
	Seccomp  bool   `json:"seccomp,omitempty"`
	UID      int    `json:"uid"`
	Refused  string `json:"refused,omitempty"`
}
