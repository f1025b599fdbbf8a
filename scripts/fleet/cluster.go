package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// cluster drives scripts/cluster.sh and reads the counters the broker
// side keeps: HAProxy's (bytes and sessions per frontend and server, over
// its admin socket) and each RabbitMQ node's (messages, connections and
// memory, from its Prometheus endpoint).
type cluster struct {
	script string
	env    map[string]string
}

func openCluster(script string) (*cluster, error) {
	out, err := exec.Command(script, "env").Output()
	if err != nil {
		return nil, fmt.Errorf("%s env: %w", script, err)
	}
	c := &cluster{script: script, env: map[string]string{}}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			c.env[k] = v
		}
	}
	return c, nil
}

func (c *cluster) run(args ...string) error {
	out, err := exec.Command(c.script, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", c.script, strings.Join(args, " "), err, out)
	}
	return nil
}

// haproxy sends one command to HAProxy's admin socket.
func (c *cluster) haproxy(cmd string) (string, error) {
	conn, err := net.DialTimeout("unix", c.env["CLUSTER_HAPROXY_SOCK"], 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	return string(b), err
}

// proxyStat is one row of HAProxy's "show stat": a frontend, a backend
// or a server.
type proxyStat map[string]string

func (s proxyStat) n(field string) int64 {
	v, _ := strconv.ParseInt(s[field], 10, 64)
	return v
}

// stats returns HAProxy's rows by "proxy/name" (name FRONTEND, BACKEND or
// a server's).
func (c *cluster) stats() (map[string]proxyStat, error) {
	out, err := c.haproxy("show stat")
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("haproxy show stat: %v (%d rows)", err, len(rows))
	}
	head := rows[0]
	m := map[string]proxyStat{}
	for _, row := range rows[1:] {
		s := proxyStat{}
		for i, v := range row {
			if i < len(head) {
				s[head[i]] = v
			}
		}
		m[s["pxname"]+"/"+s["svname"]] = s
	}
	return m, nil
}

// busiestNode is the node (1..3) holding the most robot connections.
func (c *cluster) busiestNode() (int, int64, error) {
	st, err := c.stats()
	if err != nil {
		return 0, 0, err
	}
	best, most := 0, int64(-1)
	for n := 1; n <= 3; n++ {
		if cur := st["rabbit/n"+strconv.Itoa(n)].n("scur"); cur > most {
			best, most = n, cur
		}
	}
	return best, most, nil
}

// serversUp counts the robots' backend servers HAProxy sees up.
func (c *cluster) serversUp() int {
	st, err := c.stats()
	if err != nil {
		return 0
	}
	up := 0
	for n := 1; n <= 3; n++ {
		if strings.HasPrefix(st["rabbit/n"+strconv.Itoa(n)]["status"], "UP") {
			up++
		}
	}
	return up
}

// nodeMetrics is one scrape of every node: sums of the samples of each
// metric family over labels, per node.
type nodeMetrics []map[string]float64

func (c *cluster) scrape(ctx context.Context) (nodeMetrics, error) {
	var out nodeMetrics
	for n := 1; n <= 3; n++ {
		m, err := scrapeOne(ctx, c.env["CLUSTER_METRICS_"+strconv.Itoa(n)])
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", n, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func scrapeOne(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			// Keep the kind of the VM's memory apart; sum the rest.
			if strings.HasPrefix(name, "erlang_vm_memory_bytes_total") {
				name = "erlang_vm_memory_bytes_total" + name[j:]
			} else {
				name = name[:j]
			}
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[name] += v
	}
	return m, sc.Err()
}

// sum adds a family over the nodes.
func (nm nodeMetrics) sum(name string) float64 {
	var s float64
	for _, m := range nm {
		s += m[name]
	}
	return s
}

// memory is the Erlang VMs' allocated memory (processes and system) and
// the nodes' resident set, summed over the nodes.
func (nm nodeMetrics) memory() (erlang, rss float64) {
	return nm.sum(`erlang_vm_memory_bytes_total{kind="processes"}`) + nm.sum(`erlang_vm_memory_bytes_total{kind="system"}`),
		nm.sum("rabbitmq_process_resident_memory_bytes")
}
