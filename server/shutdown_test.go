package server_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tierguard/tierguard/decision"
	"github.com/tierguard/tierguard/server"
	"github.com/tierguard/tierguard/server/identity"
)

// A request in flight when shutdown begins is answered; new connections
// are refused.
func TestGracefulShutdownFinishesRequestsInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := decision.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := decision.NewEngine(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDevIssuer("http://" + l.Addr().String() + "/dev")
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := identity.NewVerifier([]identity.IssuerConfig{dev.IssuerConfig()}, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Dev: dev}, engine, verifier, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l, 10*time.Second) }()

	// Start a request and send only half its body.
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"kind": "feature", "name": "hd"}`
	fmt.Fprintf(conn, "POST /authz/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(body), body[:10])
	time.Sleep(100 * time.Millisecond) // the server is now reading the body

	cancel()
	time.Sleep(100 * time.Millisecond) // shutdown has begun
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("a new connection was accepted after shutdown began")
	}

	if _, err := conn.Write([]byte(body[10:])); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the in-flight request got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("in-flight request = %d, want 200", resp.StatusCode)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}
