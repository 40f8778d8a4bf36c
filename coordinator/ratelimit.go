package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Rate limits
//
// Beside the in-flight budgets (admission.go), a node can bound the rate
// of client operations on a key prefix, or of one user, with token
// buckets (golang.org/x/time/rate). Each key a client operation touches
// takes a token from the bucket of the longest prefix rule that matches
// the key and from the bucket of the caller's user, when rules name them;
// an operation that finds a bucket empty is refused at once with
// ErrOverloaded (HTTP 429, ERROR_CODE_OVERLOADED, RESP -BUSY) and takes
// nothing from the other bucket. Limits are per node, as Cassandra's
// native-transport rate limit is: a client that spreads its calls over N
// nodes gets up to N times the rate. The node's own work (System
// contexts: repair, hint replay, the transaction sweep) is never limited.

// RateKind says what a RateLimit bounds.
type RateKind int

const (
	// RatePrefix bounds the operations on keys that start with Name.
	RatePrefix RateKind = iota + 1
	// RateUser bounds the operations of the user Name; Name "*" gives
	// every user no rule names a bucket of its own with this rate.
	RateUser
)

func (k RateKind) String() string {
	switch k {
	case RatePrefix:
		return "prefix"
	case RateUser:
		return "user"
	default:
		return "kind(" + strconv.Itoa(int(k)) + ")"
	}
}

// RateLimit is one rule: at most PerSec operations a second, in bursts of
// at most Burst (0: PerSec rounded up, at least 1).
type RateLimit struct {
	Kind   RateKind
	Name   string
	PerSec float64
	Burst  int
}

// String writes l as the --rate-limit flag takes it.
func (l RateLimit) String() string {
	return fmt.Sprintf("%s:%s=%s,%d", l.Kind, l.Name, strconv.FormatFloat(l.PerSec, 'f', -1, 64), l.burst())
}

func (l RateLimit) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.PerSec)))
}

// ErrBadRateLimit is returned by ParseRateLimit and Config.Validate for a
// rule that cannot be used.
var ErrBadRateLimit = errors.New("coordinator: bad rate limit")

// ParseRateLimit parses a rule as the --rate-limit flag writes it:
// "prefix:PREFIX=RATE[,BURST]" or "user:NAME=RATE[,BURST]" (NAME "*":
// each user no other rule names gets a bucket of its own). RATE is
// operations per second (a decimal), BURST a whole number of operations.
// The rate is what follows the last "=", so a prefix may contain "=".
func ParseRateLimit(s string) (RateLimit, error) {
	kind, rest, ok := strings.Cut(s, ":")
	i := strings.LastIndexByte(rest, '=')
	if !ok || i < 0 {
		return RateLimit{}, fmt.Errorf("%w %q: want prefix:PREFIX=RATE[,BURST] or user:NAME=RATE[,BURST]", ErrBadRateLimit, s)
	}
	l := RateLimit{Name: rest[:i]}
	switch kind {
	case "prefix":
		l.Kind = RatePrefix
	case "user":
		l.Kind = RateUser
	default:
		return RateLimit{}, fmt.Errorf("%w %q: kind %q is neither prefix nor user", ErrBadRateLimit, s, kind)
	}
	perSec, burst, hasBurst := strings.Cut(rest[i+1:], ",")
	var err error
	if l.PerSec, err = strconv.ParseFloat(perSec, 64); err != nil {
		return RateLimit{}, fmt.Errorf("%w %q: rate %q is not a number", ErrBadRateLimit, s, perSec)
	}
	if hasBurst {
		if l.Burst, err = strconv.Atoi(burst); err != nil || l.Burst <= 0 {
			return RateLimit{}, fmt.Errorf("%w %q: burst %q is not a positive whole number", ErrBadRateLimit, s, burst)
		}
	}
	if err := l.validate(); err != nil {
		return RateLimit{}, err
	}
	return l, nil
}

func (l RateLimit) validate() error {
	switch {
	case l.Kind != RatePrefix && l.Kind != RateUser:
		return fmt.Errorf("%w: rule %q has an unknown kind", ErrBadRateLimit, l.Name)
	case l.Kind == RateUser && l.Name == "":
		return fmt.Errorf("%w: a user rule needs a user name (or *)", ErrBadRateLimit)
	case math.IsNaN(l.PerSec) || math.IsInf(l.PerSec, 0) || l.PerSec <= 0:
		return fmt.Errorf("%w: %s:%s: the rate must be a positive number of operations a second", ErrBadRateLimit, l.Kind, l.Name)
	case l.Burst < 0:
		return fmt.Errorf("%w: %s:%s: the burst must not be negative", ErrBadRateLimit, l.Kind, l.Name)
	}
	return nil
}

// validateRateLimits reports bad rules and rules given twice.
func validateRateLimits(ls []RateLimit) error {
	var errs []error
	seen := make(map[string]bool, len(ls))
	for _, l := range ls {
		if err := l.validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		id := l.Kind.String() + ":" + l.Name
		if seen[id] {
			errs = append(errs, fmt.Errorf("%w: %s is given twice", ErrBadRateLimit, id))
		}
		seen[id] = true
	}
	return errors.Join(errs...)
}

// RateLimitedError is an operation refused by a rate limit: nothing was
// done. It matches ErrOverloaded; Wait is when the rule's bucket has a
// token again (HTTP Retry-After).
type RateLimitedError struct {
	Rule RateLimit
	Wait time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("%v: rate limit %s reached; retry after %s", ErrOverloaded, e.Rule, e.Wait.Round(time.Millisecond))
}

// Is makes a RateLimitedError match ErrOverloaded.
func (e *RateLimitedError) Is(target error) bool { return target == ErrOverloaded }

// CallerNamer is implemented by an Authorizer that can name the user who
// made a request: user rate limits need it. "" is an anonymous caller,
// whom no user rule limits.
type CallerNamer interface {
	CallerName(ctx context.Context) string
}

// rateRule is a rule with its bucket ("user:*" has one per user).
type rateRule struct {
	limit   RateLimit
	bucket  *rate.Limiter
	refused prometheus.Counter

	mu      sync.Mutex
	perUser map[string]*rate.Limiter // "user:*" only; bounded by the users auth knows
}

// limiter returns the bucket of user: the rule's own, but for "user:*".
func (r *rateRule) limiter(user string) *rate.Limiter {
	if r.perUser == nil {
		return r.bucket
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.perUser[user]
	if !ok {
		l = rate.NewLimiter(rate.Limit(r.limit.PerSec), r.limit.burst())
		r.perUser[user] = l
	}
	return l
}

// rateLimits holds a node's rules; nil when it has none.
type rateLimits struct {
	prefixes []*rateRule // longest prefix first
	users    map[string]*rateRule
	anyUser  *rateRule // "user:*"
	names    CallerNamer
}

func newRateLimits(ls []RateLimit, names CallerNamer, reg prometheus.Registerer) (*rateLimits, error) {
	if len(ls) == 0 {
		return nil, nil //nolint:nilnil // no rules: no limiter
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ringkv", Subsystem: "coordinator", Name: "rate_limited_total",
		Help: "Client operations refused at once because a rate limit's bucket was empty, by rule (prefix:NAME or user:NAME).",
	}, []string{"rule"})
	if err := reg.Register(refused); err != nil {
		return nil, fmt.Errorf("register rate limit metrics: %w", err)
	}
	rl := &rateLimits{users: map[string]*rateRule{}, names: names}
	for _, l := range ls {
		r := &rateRule{limit: l, refused: refused.WithLabelValues(l.Kind.String() + ":" + l.Name)}
		switch {
		case l.Kind == RatePrefix:
			r.bucket = rate.NewLimiter(rate.Limit(l.PerSec), l.burst())
			rl.prefixes = append(rl.prefixes, r)
		case l.Name == "*":
			r.perUser = map[string]*rate.Limiter{}
			rl.anyUser = r
		default:
			r.bucket = rate.NewLimiter(rate.Limit(l.PerSec), l.burst())
			rl.users[l.Name] = r
		}
	}
	// Longest first: the first match is the most specific rule.
	slices.SortStableFunc(rl.prefixes, func(a, b *rateRule) int { return len(b.limit.Name) - len(a.limit.Name) })
	return rl, nil
}

// take takes a token for one operation of ctx's caller on key from each
// bucket that applies (the longest matching prefix rule's, the user's),
// or from none: when one is empty it returns an error wrapping
// ErrOverloaded that names the rule and the wait.
func (rl *rateLimits) take(ctx context.Context, key []byte, now time.Time) error {
	var rules [2]*rateRule
	var users [2]string
	n := 0
	for _, r := range rl.prefixes {
		if strings.HasPrefix(string(key), r.limit.Name) {
			rules[n] = r
			n++
			break
		}
	}
	if (len(rl.users) > 0 || rl.anyUser != nil) && rl.names != nil {
		if user := rl.names.CallerName(ctx); user != "" {
			r, ok := rl.users[user]
			if !ok {
				r = rl.anyUser
			}
			if r != nil {
				rules[n], users[n] = r, user
				n++
			}
		}
	}
	var res [2]*rate.Reservation
	for i := range n {
		r := rules[i]
		res[i] = r.limiter(users[i]).ReserveN(now, 1)
		if d := res[i].DelayFrom(now); d > 0 {
			for j := range i + 1 {
				res[j].CancelAt(now)
			}
			r.refused.Inc()
			return &RateLimitedError{Rule: r.limit, Wait: d}
		}
	}
	return nil
}
