package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
)

// printCost prints one cost run: per robot-day by kind, the broker's
// totals beside the robots', memory, and the figures scaled to fleets.
func printCost(r costResult) {
	n := float64(r.Robots)
	fmt.Printf("\ncost, %d robots, keepalive %s, chunk %d, ack timeout %s (idle window %.0f s, day %.0f s + drain %.0f s)\n",
		r.Robots, r.Settings.KeepAlive, r.Settings.ChunkSize, r.Settings.AckTimeout, r.Idle.Seconds, r.DaySeconds, r.DrainSeconds)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "per robot-day, by kind\tidle msgs\tidle bytes\tbusy msgs\tbusy bytes")
	for _, k := range sortedKeys(r.BusyDay.Kinds) {
		i, b := r.IdleDay.Kinds[k], r.BusyDay.Kinds[k]
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", k, i.Msgs, i.Bytes, b.Msgs, b.Bytes)
	}
	row := func(name string, i, b float64) { fmt.Fprintf(w, "%s\t%.0f\t\t%.0f\t\n", name, i, b) }
	fmt.Fprintf(w, "all, robot to broker (robots' count)\t%.0f\t%.0f\t%.0f\t%.0f\n", r.IdleDay.MsgsOut, r.IdleDay.BytesOut, r.BusyDay.MsgsOut, r.BusyDay.BytesOut)
	fmt.Fprintf(w, "all, broker to robot (robots' count)\t%.0f\t%.0f\t%.0f\t%.0f\n", r.IdleDay.MsgsIn, r.IdleDay.BytesIn, r.BusyDay.MsgsIn, r.BusyDay.BytesIn)
	fmt.Fprintf(w, "bytes in at HAProxy\t\t%.0f\t\t%.0f\n", r.IdleDay.ProxyIn, r.BusyDay.ProxyIn)
	fmt.Fprintf(w, "bytes out at HAProxy\t\t%.0f\t\t%.0f\n", r.IdleDay.ProxyOut, r.BusyDay.ProxyOut)
	row("PUBLISH to broker (robots' count)", r.IdleDay.PublishOut, r.BusyDay.PublishOut)
	row("messages received by the nodes, less the cloud's", r.IdleDay.BrokerIn, r.BusyDay.BrokerIn)
	row("PUBLISH to robots (robots' count)", r.IdleDay.PublishIn, r.BusyDay.PublishIn)
	row("messages delivered by the nodes, less to the cloud", r.IdleDay.BrokerOut, r.BusyDay.BrokerOut)
	w.Flush()
	fmt.Printf("resends: %.1f artifacts sent whole again per robot and day (no ack within the timeout)\n", r.Resent)
	fmt.Printf("reconcile the day's window: robots wrote %d bytes, HAProxy received %d; robots read %d, HAProxy sent %d; robots published %d, the nodes received %.0f from them; the nodes delivered %.0f to robots, robots got %d PUBLISHes\n",
		r.Day.WireOut, r.Day.ProxyIn, r.Day.WireIn, r.Day.ProxyOut, r.Day.RobotPublishes, r.Day.BrokerFromRobots, r.Day.BrokerToRobots, r.Day.RobotDeliveries)
	fmt.Printf("broker memory (Erlang, 3 nodes, after a full GC): base %.1f MiB, %d connected %.1f MiB, offline %.1f MiB, offline with a command each %.1f MiB; after the day, sessions dropped %.1f MiB\n",
		r.MemBase/(1<<20), r.Robots, r.MemConnected/(1<<20), r.MemOffline/(1<<20), r.MemOfflineCmd/(1<<20), r.MemCleaned/(1<<20))
	fmt.Printf("  per connected robot %.0f KiB (RSS %.0f KiB), per offline session %.0f KiB (RSS %.0f KiB), per queued command %.1f KiB\n",
		r.PerConnected/1024, r.RSSPerConnected/1024, r.PerOffline/1024, r.RSSPerOffline/1024, r.PerQueuedCommand/1024)
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "scaled\trobots\tmsgs/s in\tmsgs/s out\tMbit/s in\tMbit/s out\tbroker memory, all connected\tall offline")
	for _, fleet := range []float64{100_000, 1_000_000} {
		for _, d := range []struct {
			name string
			p    perDay
		}{{"idle day", r.IdleDay}, {"busy day", r.BusyDay}} {
			fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f GiB\t%.1f GiB\n", d.name, fleet,
				d.p.MsgsOut*fleet/86400, d.p.MsgsIn*fleet/86400, d.p.BytesOut*fleet*8/86400/1e6, d.p.BytesIn*fleet*8/86400/1e6,
				(r.PerConnected+r.PerOffline)*fleet/(1<<30), r.PerOffline*fleet/(1<<30))
		}
	}
	w.Flush()
	_ = n
}

// printCompare prints the before/after table of a robot's busy day.
func printCompare(b, a costResult) {
	fmt.Printf("\nbefore: keepalive %s, chunk %d; after: keepalive %s, chunk %d\n", b.Settings.KeepAlive, b.Settings.ChunkSize, a.Settings.KeepAlive, a.Settings.ChunkSize)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "per robot-day\tbefore msgs\tbefore bytes\tafter msgs\tafter bytes")
	keys := map[string]bool{}
	for k := range b.BusyDay.Kinds {
		keys[k] = true
	}
	for k := range a.BusyDay.Kinds {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		x, y := b.BusyDay.Kinds[k], a.BusyDay.Kinds[k]
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", k, x.Msgs, x.Bytes, y.Msgs, y.Bytes)
	}
	for _, d := range []struct {
		name string
		b, a perDay
	}{{"idle day", b.IdleDay, a.IdleDay}, {"busy day", b.BusyDay, a.BusyDay}} {
		fmt.Fprintf(w, "%s, all packets both ways\t%.0f\t%.0f\t%.0f\t%.0f\n", d.name, d.b.MsgsOut+d.b.MsgsIn, d.b.BytesOut+d.b.BytesIn, d.a.MsgsOut+d.a.MsgsIn, d.a.BytesOut+d.a.BytesIn)
		fmt.Fprintf(w, "%s, at HAProxy\t\t%.0f\t\t%.0f\n", d.name, d.b.ProxyIn+d.b.ProxyOut, d.a.ProxyIn+d.a.ProxyOut)
	}
	w.Flush()
	fmt.Println(strings.Repeat("-", 40))
}
