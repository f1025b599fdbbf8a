// Command aibo-privacyd is the privacy agent of the aibo robot: it stands
// between the camera and the internet and keeps only what the owner and
// each person consented to. It is pure Go and never links OpenCV.
//
// Usage: aibo-privacyd -config PATH
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/aibo-privacy/aibo-privacyd/agent"
	"github.com/aibo-privacy/aibo-privacyd/agent/config"
	"github.com/aibo-privacy/aibo-privacyd/agent/vision"
)

func main() {
	vision.RunLauncher() // started as the vision worker's launcher: confine, exec, never return
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "aibo-privacyd: %s\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("aibo-privacyd", flag.ContinueOnError)
	path := fs.String("config", "", "path to the YAML configuration")
	if err := fs.Parse(args); err != nil {
		return errors.New("usage: aibo-privacyd -config PATH")
	}
	if *path == "" || fs.NArg() > 0 {
		return errors.New("usage: aibo-privacyd -config PATH")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := agent.New(cfg, log)
	if err != nil {
		return err
	}
	if err := d.Run(ctx); err != nil {
		return err
	}
	log.Info("aibo-privacyd stopped")
	return nil
}
