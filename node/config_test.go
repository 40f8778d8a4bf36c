package node

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestAdvertiseValidation(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.ID, c.DataDir = "n1", "/tmp/x"
		c.HTTPAddr, c.RPCAddr, c.GossipAddr = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"
		return c
	}
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" = valid
	}{
		{"loopback needs nothing", func(*Config) {}, ""},
		{"every interface without advertise", func(c *Config) { c.RPCAddr = "0.0.0.0:2" }, "RPCAddr \"0.0.0.0:2\" listens on every interface"},
		{"empty host is every interface", func(c *Config) { c.HTTPAddr = ":1" }, "HTTPAddr \":1\" listens on every interface"},
		{"every interface with advertise", func(c *Config) {
			c.HTTPAddr, c.RPCAddr, c.GossipAddr = "0.0.0.0:1", "[::]:2", ":3"
			c.Advertise = "ringkv-0.ringkv.default.svc"
		}, ""},
		{"every interface with an override", func(c *Config) {
			c.RPCAddr, c.AdvertiseRPCAddr = "0.0.0.0:2", "10.1.2.3:31000"
		}, ""},
		{"advertise with a port", func(c *Config) { c.Advertise = "10.1.2.3:7000" }, "want the host"},
		{"advertise unspecified", func(c *Config) { c.Advertise = "0.0.0.0" }, "want the host"},
		{"override without port", func(c *Config) { c.AdvertiseHTTPAddr = "10.1.2.3" }, "AdvertiseHTTPAddr"},
		{"override unspecified", func(c *Config) { c.AdvertiseGossipAddr = "0.0.0.0:7946" }, "AdvertiseGossipAddr"},
		{"ipv6 advertise", func(c *Config) { c.Advertise = "fd00::5" }, ""},
		{"clock offset without chaos hooks", func(c *Config) { c.ChaosClockOffset = time.Second }, "needs ChaosHooks"},
		{"clock offset with chaos hooks", func(c *Config) { c.ChaosHooks, c.ChaosClockOffset = true, -time.Second }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestAdvertised(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4zero, Port: 7000}
	c := Config{}
	if got := c.advertised(bound, ""); got != "0.0.0.0:7000" {
		t.Errorf("no advertise: %q", got)
	}
	c.Advertise = "10.9.0.2"
	if got := c.advertised(bound, ""); got != "10.9.0.2:7000" {
		t.Errorf("advertise host: %q", got)
	}
	c.Advertise = "fd00::2"
	if got := c.advertised(bound, ""); got != "[fd00::2]:7000" {
		t.Errorf("advertise ipv6: %q", got)
	}
	if got := c.advertised(bound, "nat.example:31000"); got != "nat.example:31000" {
		t.Errorf("override: %q", got)
	}
}
