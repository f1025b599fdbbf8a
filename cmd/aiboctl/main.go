// Command aiboctl is the field technicians' CLI for aibo-privacyd. It talks
// HTTP/1.1 to the daemon's diagnostic Unix socket (package agent/diag) and
// prints counts, ages, ids and hashes: the socket never carries photos,
// faces, names or birthdays, and aiboctl has no other way in. It is pure Go
// and must never link OpenCV.
//
//	aiboctl [-socket PATH] COMMAND [--json]
//
// Each kind of failure has its own exit code (exitCodes below), so a
// script or a monitoring probe can tell a degraded robot from a wrong
// account or a daemon that is not running.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
	"github.com/aibo-privacy/aibo-privacyd/internal/version"
)

const (
	defaultSocket = paths.DiagSocket
	envSocket     = "AIBO_DIAG_SOCKET"

	exitOK          = 0 // the answer is printed and everything is fine
	exitNotOK       = 1 // the daemon reported a problem: degraded health, a failed self-test check, a broken audit chain
	exitUsage       = 2 // bad command line
	exitUnreachable = 3 // no daemon answers on the socket: missing, refused, or no answer in time
	exitForbidden   = 4 // this user may not use the socket (SO_PEERCRED refused it, or the socket file's mode)
	exitDaemonError = 5 // the daemon answered with an error (an HTTP 4xx/5xx other than 403) or an unreadable answer

	maxAuditLimit = 1000 // as agent/diag.MaxAuditLimit

	// requestTimeout leaves room for the daemon's own 30 s write timeout.
	requestTimeout = 40 * time.Second
	maxAnswer      = 32 << 20
)

const usageText = `usage: aiboctl [-socket PATH] COMMAND [--json]

Commands:
  status               daemon status as key/value rows
  health               overall health and one row per check (exit 1 if degraded)
  audit [-limit N]     newest audit records, N from 1 to 1000 (default 50)
  audit verify         verify the audit hash chain (exit 1 if broken)
  metrics              Prometheus metrics, as served (--json: one object per family)
  queue                outbox by kind: count, bytes, oldest age
  inventory            what the device holds, by category and subject: counts and ages
  selftest             run the daemon's self-test (exit 1 if a check fails)
  help                 this text
  version              aiboctl's build (also -version)

Flags (before or after the command words):
  -socket PATH         diagnostic socket (default $AIBO_DIAG_SOCKET, else ` + defaultSocket + `)
  -json, --json        print the daemon's JSON answer, indented
  -limit N             with audit: how many records

Exit codes:
  0  ok
  1  the daemon reported a problem (degraded, a self-test check failed, audit chain broken)
  2  usage error
  3  no daemon answers on the socket (missing, refused, timed out)
  4  this user is not allowed on the socket
  5  the daemon answered with an error
`

// The wire types below mirror agent/diag.Health and core/audit.Record and
// Report (the tests run against the real server). aiboctl keeps its own
// copies so it links neither the store nor the daemon's packages.

type healthAnswer struct {
	Status string `json:"status"`
	Checks map[string]struct {
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"checks"`
}

type auditRecord struct {
	Seq     uint64            `json:"seq"`
	At      time.Time         `json:"at"`
	Type    string            `json:"type"`
	Subject string            `json:"subject_id"`
	Fields  map[string]string `json:"fields"`
}

type auditReport struct {
	OK      bool   `json:"ok"`
	Records int    `json:"records"`
	BadSeq  uint64 `json:"bad_seq"`
	Problem string `json:"problem"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	socket   string
	json     bool
	limit    int
	limitSet bool
	help     bool
	version  bool
	words    []string
}

// command is one CLI command: the request it makes and how it renders the
// answer.
type command struct {
	method, path string
	render       func(w io.Writer, body []byte) (int, error)
}

// run is the whole CLI; main only wires the process to it.
func run(args []string, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "aiboctl: "+format+"\n", a...)
		return code
	}

	opts, err := parseArgs(args)
	if err != nil {
		return fail(exitUsage, "%v; run 'aiboctl -h' for usage", err)
	}
	if opts.help || (len(opts.words) == 1 && opts.words[0] == "help") {
		io.WriteString(stdout, usageText)
		return exitOK
	}
	if opts.version || (len(opts.words) == 1 && opts.words[0] == "version") {
		fmt.Fprintln(stdout, version.String("aiboctl"))
		return exitOK
	}
	cmd, err := pick(opts)
	if err != nil {
		return fail(exitUsage, "%v; run 'aiboctl -h' for usage", err)
	}
	sock := opts.socket
	if sock == "" {
		sock = os.Getenv(envSocket)
	}
	if sock == "" {
		sock = defaultSocket
	}

	status, ctype, body, err := call(sock, cmd.method, cmd.path)
	if err != nil {
		return fail(transportExit(err), "%s", describeTransportError(sock, err))
	}
	isJSON := strings.HasPrefix(ctype, "application/json")

	// Health-shaped answers come with 503 when degraded: still render them.
	healthLike := cmd.path == "/v1/health" || cmd.path == "/v1/selftest"
	if status >= 400 && !(healthLike && status == http.StatusServiceUnavailable && isJSON) {
		if opts.json && isJSON {
			printJSON(stdout, body)
		}
		if status == http.StatusForbidden {
			return fail(exitForbidden, "forbidden: this user is not allowed on the diagnostic socket")
		}
		return fail(exitDaemonError, "daemon answered %d %s: %s", status, http.StatusText(status), serverMessage(body))
	}

	if cmd.path == "/metrics" && opts.json {
		if err := metricsJSON(stdout, body); err != nil {
			return fail(exitDaemonError, "cannot read the daemon's metrics: %v", err)
		}
		return exitOK
	}
	if cmd.path == "/metrics" || !isJSON {
		// Prometheus text is printed as served.
		stdout.Write(body)
		return exitOK
	}
	if opts.json {
		printJSON(stdout, body)
		return verdict(cmd.path, status, body)
	}
	code, err := cmd.render(stdout, body)
	if err != nil {
		return fail(exitDaemonError, "cannot read the daemon's answer: %v", err)
	}
	return code
}

// transportExit tells a user the socket refuses (its file mode) from a
// socket nobody answers on.
func transportExit(err error) int {
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return exitForbidden
	}
	return exitUnreachable
}

// parseArgs accepts flags anywhere among the command words, in the forms
// -name, --name, -name=value and -name value; "--" ends the flags.
func parseArgs(args []string) (options, error) {
	var o options
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.words = append(o.words, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			o.words = append(o.words, a)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		value, hasValue := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = k, v, true
		}
		needValue := func() (string, error) {
			if hasValue {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("flag -%s needs a value", name)
			}
			i++
			return args[i], nil
		}
		switch name {
		case "socket":
			v, err := needValue()
			if err != nil {
				return o, err
			}
			if v == "" {
				return o, errors.New("flag -socket needs a path")
			}
			o.socket = v
		case "json":
			o.json = true
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil {
					return o, fmt.Errorf("flag -json: bad value %q", value)
				}
				o.json = b
			}
		case "limit":
			v, err := needValue()
			if err != nil {
				return o, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxAuditLimit {
				return o, fmt.Errorf("-limit must be an integer from 1 to %d, not %q", maxAuditLimit, v)
			}
			o.limit, o.limitSet = n, true
		case "h", "help":
			o.help = true
		case "version":
			o.version = true
		default:
			return o, fmt.Errorf("unknown flag %s", a)
		}
	}
	return o, nil
}

// pick maps the command words to a request.
func pick(o options) (command, error) {
	if len(o.words) == 0 {
		return command{}, errors.New("no command given")
	}
	noLimit := func(c command) (command, error) {
		if o.limitSet {
			return command{}, fmt.Errorf("-limit only applies to 'audit'")
		}
		return c, nil
	}
	extra := func() error {
		return fmt.Errorf("unexpected %q after %q", strings.Join(o.words[1:], " "), o.words[0])
	}
	w := o.words
	switch w[0] {
	case "status", "queue":
		if len(w) > 1 {
			return command{}, extra()
		}
		render := renderFlat
		if w[0] == "status" {
			render = renderStatus
		}
		return noLimit(command{http.MethodGet, "/v1/" + w[0], render})
	case "inventory":
		if len(w) > 1 {
			return command{}, extra()
		}
		return noLimit(command{http.MethodGet, "/v1/inventory", renderInventory})
	case "health":
		if len(w) > 1 {
			return command{}, extra()
		}
		return noLimit(command{http.MethodGet, "/v1/health", renderHealth("status")})
	case "selftest":
		if len(w) > 1 {
			return command{}, extra()
		}
		return noLimit(command{http.MethodPost, "/v1/selftest", renderHealth("selftest")})
	case "metrics":
		if len(w) > 1 {
			return command{}, extra()
		}
		return noLimit(command{http.MethodGet, "/metrics", nil})
	case "audit":
		if len(w) == 1 {
			path := "/v1/audit"
			if o.limitSet {
				path += "?" + url.Values{"limit": {strconv.Itoa(o.limit)}}.Encode()
			}
			return command{http.MethodGet, path, renderAudit}, nil
		}
		if w[1] == "verify" && len(w) == 2 {
			return noLimit(command{http.MethodGet, "/v1/audit/verify", renderVerify})
		}
		return command{}, fmt.Errorf("unknown audit command %q (want 'audit' or 'audit verify')", strings.Join(w[1:], " "))
	default:
		return command{}, fmt.Errorf("unknown command %q", w[0])
	}
}

// call makes one request over the Unix socket.
func call(sock, method, path string) (status int, ctype string, body []byte, err error) {
	client := &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		},
	}
	req, err := http.NewRequest(method, "http://aibo-diag"+path, nil)
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Accept", "application/json")
	if path == "/metrics" {
		req.Header.Set("Accept", "text/plain;version=0.0.4")
	}
	req.Header.Set("User-Agent", "aiboctl")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, "", nil, err
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body, nil
}

// describeTransportError turns a failed request into one line.
func describeTransportError(sock string, err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return fmt.Sprintf("cannot reach %s: %s", sock, errno.Error())
		}
		return fmt.Sprintf("cannot reach %s: %v", sock, op.Err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Sprintf("%s: no answer within %s", sock, requestTimeout)
		}
		err = ue.Err
	}
	return fmt.Sprintf("%s: %v", sock, err)
}

// serverMessage extracts {"error": ...} from an error answer.
func serverMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return printable(e.Error)
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return printable(s)
}

// verdict gives the exit code of a --json run.
func verdict(path string, status int, body []byte) int {
	if status >= 400 {
		return exitNotOK
	}
	if path == "/v1/audit/verify" {
		var rep auditReport
		if json.Unmarshal(body, &rep) != nil || !rep.OK {
			return exitNotOK
		}
	}
	return exitOK
}

func printJSON(w io.Writer, body []byte) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
		w.Write(body)
		return
	}
	buf.WriteByte('\n')
	w.Write(buf.Bytes())
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// renderFlat prints any JSON value as sorted "key  value" rows, nested
// objects flattened with dotted keys and arrays with [i].
func renderFlat(w io.Writer, body []byte) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return exitNotOK, err
	}
	var rows [][2]string
	flatten("", v, &rows)
	tw := newTable(w)
	for _, r := range rows {
		if r[0] == "" {
			fmt.Fprintf(tw, "%s\n", r[1])
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	return exitOK, tw.Flush()
}

func flatten(prefix string, v any, rows *[][2]string) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			*rows = append(*rows, [2]string{prefix, "{}"})
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			key := printable(k)
			if prefix != "" {
				key = prefix + "." + key
			}
			flatten(key, x[k], rows)
		}
	case []any:
		if len(x) == 0 {
			*rows = append(*rows, [2]string{prefix, "[]"})
			return
		}
		for i, e := range x {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), e, rows)
		}
	default:
		*rows = append(*rows, [2]string{prefix, scalar(x)})
	}
}

func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if x == "" {
			return `""`
		}
		return printable(x)
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	default:
		return fmt.Sprint(x)
	}
}

// printable quotes s when it holds anything that could disturb a terminal
// or a table (control characters, tabs, newlines, escape sequences).
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}

func renderHealth(label string) func(io.Writer, []byte) (int, error) {
	return func(w io.Writer, body []byte) (int, error) {
		var h healthAnswer
		if err := json.Unmarshal(body, &h); err != nil {
			return exitNotOK, err
		}
		fmt.Fprintf(w, "%s: %s\n", label, printable(h.Status))
		names := make([]string, 0, len(h.Checks))
		for name := range h.Checks {
			names = append(names, name)
		}
		sort.Strings(names)
		if len(names) > 0 {
			tw := newTable(w)
			fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
			for _, name := range names {
				c := h.Checks[name]
				result := "OK"
				if !c.OK {
					result = "FAIL"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", printable(name), result, printable(c.Detail))
			}
			if err := tw.Flush(); err != nil {
				return exitNotOK, err
			}
		}
		if h.Status != "ok" {
			return exitNotOK, nil
		}
		return exitOK, nil
	}
}

func renderAudit(w io.Writer, body []byte) (int, error) {
	var recs []auditRecord
	if err := json.Unmarshal(body, &recs); err != nil {
		return exitNotOK, err
	}
	if len(recs) == 0 {
		fmt.Fprintln(w, "no audit records")
		return exitOK, nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tSUBJECT\tFIELDS")
	for _, r := range recs {
		at := "-"
		if !r.At.IsZero() {
			at = r.At.Format(time.RFC3339)
		}
		subject := "-"
		if r.Subject != "" {
			subject = printable(r.Subject)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Seq, at, printable(r.Type), subject, formatFields(r.Fields))
	}
	return exitOK, tw.Flush()
}

// formatFields renders k=v pairs sorted by key, quoting values that would
// be ambiguous.
func formatFields(f map[string]string) string {
	if len(f) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := f[k]
		if v == "" || strings.ContainsAny(v, " =\"") || printable(v) != v {
			v = strconv.Quote(v)
		}
		parts = append(parts, printable(k)+"="+v)
	}
	return strings.Join(parts, " ")
}

func renderVerify(w io.Writer, body []byte) (int, error) {
	var rep auditReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return exitNotOK, err
	}
	if rep.OK {
		fmt.Fprintf(w, "audit chain OK (%d records)\n", rep.Records)
		return exitOK, nil
	}
	problem := rep.Problem
	if problem == "" {
		problem = "unspecified problem"
	}
	fmt.Fprintf(w, "audit chain BROKEN at seq %d: %s\n", rep.BadSeq, printable(problem))
	return exitNotOK, nil
}
