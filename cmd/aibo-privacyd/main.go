// Command aibo-privacyd is the privacy agent of the aibo robot: it stands
// between the camera and the internet and keeps only what the owner and
// each person consented to. It is pure Go and never links OpenCV.
//
// Usage: aibo-privacyd -config PATH | -version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/aibo-privacy/aibo-privacyd/agent"
	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/internal/logx"
	"github.com/aibo-privacy/aibo-privacyd/internal/version"
	"github.com/aibo-privacy/aibo-privacyd/vision"
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
	fs.SetOutput(os.Stdout)
	path := fs.String("config", "", "path to the YAML configuration")
	showVersion := fs.Bool("version", false, "print the build's version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errors.New("usage: aibo-privacyd -config PATH | -version")
	}
	if *showVersion {
		fmt.Println(version.String("aibo-privacyd"))
		return nil
	}
	if *path == "" || fs.NArg() > 0 {
		return errors.New("usage: aibo-privacyd -config PATH | -version")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	level, err := logx.ParseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	log := logx.New(os.Stderr, level)
	log.Info("aibo-privacyd starting", "version", version.String("aibo-privacyd"), "config", *path, "log_level", level.String())
	if len(cfg.Security.CommandKeys) == 0 {
		log.Warn("security.command_keys is empty: commands are taken unsigned, and a signed envelope is unwrapped without checking its signature")
	}

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
