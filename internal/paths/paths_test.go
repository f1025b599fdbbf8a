package paths

import (
	"os"
	"path/filepath"
	"testing"
)

// bestshot and the quality reports find the checkout's face nets from
// anywhere inside it (bin/bestshot ran with the installed folder as its
// default and failed in a checkout), and the installed ones elsewhere.
func TestFaceModelsFindsTheCheckoutsBuildModels(t *testing.T) {
	top := t.TempDir()
	models := filepath.Join(top, CheckoutFaceModels)
	deep := filepath.Join(top, "testdata", "photos")
	for _, d := range []string{models, deep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(deep)
	if got := FaceModels(); got == models {
		t.Fatalf("FaceModels() = %s before make setup wrote SHA256SUMS", got)
	}
	if err := os.WriteFile(filepath.Join(models, "SHA256SUMS"), []byte("x  a.onnx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := FaceModels(); got != models {
		t.Fatalf("FaceModels() from %s = %s, want %s", deep, got, models)
	}
	t.Chdir(t.TempDir())
	if exe, _ := os.Executable(); exe != "" {
		if _, ok := findUp(filepath.Dir(exe), filepath.Join(CheckoutFaceModels, "SHA256SUMS")); ok {
			return // the test binary itself sits in a checkout
		}
	}
	if got := FaceModels(); got != FaceModelsDir {
		t.Fatalf("FaceModels() outside a checkout = %s, want the installed %s", got, FaceModelsDir)
	}
}

// An installed daemon (/usr/sbin) starts the installed worker; one built
// into a checkout's bin/ starts the worker beside it.
func TestWorkerForPrefersTheWorkerBesideTheDaemon(t *testing.T) {
	bin := t.TempDir()
	daemon := filepath.Join(bin, "aibo-privacyd")
	if got := WorkerFor(daemon); got != Worker {
		t.Fatalf("WorkerFor with no worker beside: %s, want %s", got, Worker)
	}
	beside := filepath.Join(bin, "aibo-vision")
	if err := os.WriteFile(beside, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := WorkerFor(daemon); got != beside {
		t.Fatalf("WorkerFor = %s, want %s", got, beside)
	}
}
