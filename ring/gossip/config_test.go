package gossip

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.NodeID = "n1"
		c.DataDir = "/tmp/x"
		return c
	}
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   []string // substrings of the error; none means valid
	}{
		{name: "default", modify: func(*Config) {}},
		{name: "local", modify: func(c *Config) {
			l := LocalConfig()
			l.NodeID, l.DataDir = c.NodeID, c.DataDir
			*c = l
		}},
		{name: "zero ClaimInterval is filled", modify: func(c *Config) { c.ClaimInterval = 0 }},
		{name: "missing NodeID and DataDir", modify: func(c *Config) { c.NodeID, c.DataDir = "", "" },
			want: []string{"NodeID is required", "DataDir is required"}},
		{name: "BindAddr without port", modify: func(c *Config) { c.BindAddr = "127.0.0.1" },
			want: []string{"BindAddr"}},
		{name: "BindAddr bad port", modify: func(c *Config) { c.BindAddr = "127.0.0.1:99999" },
			want: []string{"BindAddr"}},
		{name: "empty seed", modify: func(c *Config) { c.Seeds = []string{"a:1", ""} },
			want: []string{"Seeds[1] is empty"}},
		{name: "unknown profile", modify: func(c *Config) { c.Profile = 7 },
			want: []string{"unknown Profile 7"}},
		{name: "negative ClaimInterval", modify: func(c *Config) { c.ClaimInterval = -time.Second },
			want: []string{"ClaimInterval"}},
		{name: "metadata too large", modify: func(c *Config) { c.Zone = strings.Repeat("z", 600) },
			want: []string{"metadata"}},
		{name: "bad ring config when bootstrapping", modify: func(c *Config) { c.Ring.Partitions = 3 },
			want: []string{"Ring"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.modify(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to mention %q", err, w)
				}
			}
			if _, oerr := Open(c, Deps{}); !errors.Is(oerr, ErrInvalidConfig) {
				t.Errorf("Open: got %v, want ErrInvalidConfig", oerr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Profile: Local}.withDefaults()
	if got, want := c.ClaimInterval, 200*time.Millisecond; got != want {
		t.Errorf("Local ClaimInterval: got %s, want %s", got, want)
	}
	if c.Logger == nil {
		t.Errorf("Logger: got nil, want a discarding logger")
	}
	if got, want := (Config{}).withDefaults().ClaimInterval, time.Second; got != want {
		t.Errorf("LAN ClaimInterval: got %s, want %s", got, want)
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Alive.String(), "alive"},
		{Suspect.String(), "suspect"},
		{Dead.String(), "dead"},
		{Liveness(9).String(), "Liveness(9)"},
		{LAN.String(), "lan"},
		{Local.String(), "local"},
		{Profile(9).String(), "Profile(9)"},
		{OpLeave.String(), "leave"},
		{OpRemove.String(), "remove"},
		{OpAdmit.String(), "admit"},
		{opClaim.String(), "claim"},
		{Op(9).String(), "Op(9)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
