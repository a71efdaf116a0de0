//go:build unix

package handoff

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestHelperProcess is the new process of the tests below (this test binary started again).
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv("HANDOFF_HELPER")
	if mode == "" {
		t.Skip("started by the hand-off tests")
	}
	if mode == "die" {
		os.Exit(3) // never ready
	}
	ln, err := Listener("test")
	if err != nil || ln == nil {
		t.Fatalf("no inherited listener: %v", err)
	}
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("new process"))
	c.Close()
	ln.Close()
}

// TestUpgradeHandsOverTheListener: a connection that waits in the accept queue while the old
// listener is closed is served by the new process.
func TestUpgradeHandsOverTheListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	os.Setenv("HANDOFF_HELPER", "serve")
	defer os.Unsetenv("HANDOFF_HELPER")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := Upgrade(ctx, os.Args[0], []string{"-test.run=^TestHelperProcess$"}, map[string]net.Listener{"test": ln}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	c, err := net.Dial("tcp", ln.Addr().String()) // queued before this process stops listening
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ln.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if string(got) != "new process" {
		t.Fatalf("got %q from the connection, want the new process's answer", got)
	}
}

// TestUpgradeFailureKeepsServing: a new binary that exits before it is ready makes Upgrade fail, and
// the listener still works here.
func TestUpgradeFailureKeepsServing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Setenv("HANDOFF_HELPER", "die")
	defer os.Unsetenv("HANDOFF_HELPER")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Upgrade(ctx, os.Args[0], []string{"-test.run=^TestHelperProcess$"}, map[string]net.Listener{"test": ln}, io.Discard, io.Discard); err == nil {
		t.Fatal("Upgrade succeeded with a process that never got ready")
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("old"))
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(c); string(got) != "old" {
		t.Fatalf("got %q", got)
	}
}

// TestNoHandoff: without the environment of a hand-off there is nothing inherited and Ready is a no-op.
func TestNoHandoff(t *testing.T) {
	if os.Getenv("HANDOFF_HELPER") != "" {
		t.Skip()
	}
	if Inherited() {
		t.Fatal("inherited listeners without a hand-off")
	}
	if ln, err := Listener("x"); ln != nil || err != nil {
		t.Fatalf("Listener = %v, %v", ln, err)
	}
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
}
