package resp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/match"
	"github.com/tidwall/redcon"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/consensus"
	"github.com/ringkv/ringkv/coordinator"
)

// Redis's own error texts, so that clients behave as with Redis.
const (
	errSyntax     = "ERR syntax error"
	errNotInteger = "ERR value is not an integer or out of range"
	errOverflow   = "ERR increment or decrement would overflow"
	errNoAuth     = "NOAUTH Authentication required."
	errWrongPass  = "WRONGPASS invalid username-password pair or user is disabled."
	errExpireTime = "ERR invalid expire time in '%s' command"
)

// command is one command's implementation; args excludes the name.
type command struct {
	run func(s *Server, c redcon.Conn, sess *session, args [][]byte)
	// arity as Redis reports it: n > 0 exactly n words with the name,
	// n < 0 at least -n.
	arity int
	flags []string
	// first, last, step: positions of key arguments (COMMAND's answer).
	first, last, step int
	// data: the command reads only the session's level, context and
	// protocol, so pipelined data commands on distinct keys may run
	// concurrently (batch).
	data bool
}

// commandTable returns the commands by lower-case name.
func commandTable() map[string]command {
	return map[string]command{
		"ping":               {data: true, run: cmdPing, arity: -1, flags: []string{"fast"}},
		"echo":               {data: true, run: cmdEcho, arity: 2, flags: []string{"fast"}},
		"hello":              {run: cmdHello, arity: -1, flags: []string{"fast", "no-auth"}},
		"auth":               {run: cmdAuth, arity: -2, flags: []string{"fast", "no-auth"}},
		"select":             {run: cmdSelect, arity: 2, flags: []string{"fast"}},
		"client":             {run: cmdClient, arity: -2},
		"info":               {run: cmdInfo, arity: -1},
		"command":            {run: cmdCommand, arity: -1},
		"config":             {run: cmdConfig, arity: -2},
		"quit":               {run: cmdQuit, arity: -1, flags: []string{"fast", "no-auth"}},
		"get":                {data: true, run: cmdGet, arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1},
		"set":                {data: true, run: cmdSet, arity: -3, flags: []string{"write"}, first: 1, last: 1, step: 1},
		"setnx":              {data: true, run: cmdSetNX, arity: 3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"getset":             {data: true, run: cmdGetSet, arity: 3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"getdel":             {data: true, run: cmdGetDel, arity: 2, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"del":                {data: true, run: cmdDel, arity: -2, flags: []string{"write"}, first: 1, last: -1, step: 1},
		"unlink":             {data: true, run: cmdDel, arity: -2, flags: []string{"write", "fast"}, first: 1, last: -1, step: 1},
		"exists":             {data: true, run: cmdExists, arity: -2, flags: []string{"readonly", "fast"}, first: 1, last: -1, step: 1},
		"mget":               {data: true, run: cmdMGet, arity: -2, flags: []string{"readonly", "fast"}, first: 1, last: -1, step: 1},
		"mset":               {data: true, run: cmdMSet, arity: -3, flags: []string{"write"}, first: 1, last: -1, step: 2},
		"msetnx":             {data: true, run: cmdMSetNX, arity: -3, flags: []string{"write"}, first: 1, last: -1, step: 2},
		"incr":               {data: true, run: cmdIncr(1, false), arity: 2, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"decr":               {data: true, run: cmdIncr(-1, false), arity: 2, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"incrby":             {data: true, run: cmdIncr(1, true), arity: 3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"decrby":             {data: true, run: cmdIncr(-1, true), arity: 3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"append":             {data: true, run: cmdAppend, arity: 3, flags: []string{"write"}, first: 1, last: 1, step: 1},
		"strlen":             {data: true, run: cmdStrlen, arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1},
		"type":               {data: true, run: cmdType, arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1},
		"scan":               {run: cmdScan, arity: -2, flags: []string{"readonly"}},
		"keys":               {run: cmdKeys, arity: 2, flags: []string{"readonly"}},
		"dbsize":             {run: cmdDBSize, arity: 1, flags: []string{"readonly"}},
		"ttl":                {data: true, run: cmdTTL(time.Second), arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1},
		"pttl":               {data: true, run: cmdTTL(time.Millisecond), arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1},
		"expire":             {data: true, run: cmdExpire(time.Second), arity: -3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"pexpire":            {data: true, run: cmdExpire(time.Millisecond), arity: -3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"persist":            {data: true, run: cmdPersist, arity: 2, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1},
		"multi":              {run: cmdMulti, arity: 1, flags: []string{"fast"}},
		"exec":               {run: cmdExec, arity: 1},
		"discard":            {run: cmdDiscard, arity: 1, flags: []string{"fast"}},
		"watch":              {run: cmdWatch, arity: -2, flags: []string{"fast"}, first: 1, last: -1, step: 1},
		"unwatch":            {run: cmdUnwatch, arity: 1, flags: []string{"fast"}},
		"ringkv.consistency": {run: cmdConsistency, arity: -1, flags: []string{"fast"}},
		"ringkv.cas":         {data: true, run: cmdCAS, arity: -4, flags: []string{"write"}, first: 1, last: 1, step: 1},
	}
}

func (s *Server) handle(c redcon.Conn, cmd redcon.Command) {
	sess, ok := c.Context().(*session)
	if !ok || sess.quit {
		return
	}
	if !sess.identified {
		sess.identified = true
		if s.deps.Auth != nil {
			nc := c.NetConn()
			if lc, ok := nc.(*limitConn); ok {
				nc = lc.Conn
			}
			sess.ctx = s.deps.Auth.Conn(sess.ctx, nc)
		}
	}
	if rest := c.ReadPipeline(); len(rest) > 0 {
		s.batch(c, sess, append([]redcon.Command{cmd}, rest...))
		return
	}
	s.dispatch(c, sess, cmd)
}

// dispatch runs one command.
func (s *Server) dispatch(c redcon.Conn, sess *session, cmd redcon.Command) {
	name := strings.ToLower(string(cmd.Args[0]))
	if s.queueing(c, sess, name, cmd) {
		return
	}
	def, ok := s.commands[name]
	if !ok {
		var b strings.Builder
		fmt.Fprintf(&b, "ERR unknown command '%s', with args beginning with: ", clip(cmd.Args[0]))
		for _, a := range cmd.Args[1:] {
			fmt.Fprintf(&b, "'%s' ", clip(a))
		}
		c.WriteError(b.String())
		return
	}
	if (def.arity > 0 && len(cmd.Args) != def.arity) || (def.arity < 0 && len(cmd.Args) < -def.arity) {
		c.WriteError("ERR wrong number of arguments for '" + name + "' command")
		return
	}
	if s.deps.Admit != nil && touchesStore(name, def) {
		n := 0
		for _, a := range cmd.Args {
			n += len(a)
		}
		release, err := s.deps.Admit.Admit(int64(n))
		if err != nil {
			writeErr(c, err)
			return
		}
		defer release()
	}
	def.run(s, c, sess, cmd.Args[1:])
}

// touchesStore says whether a command reads or writes the store, and so
// takes a place in the node's admission budget (Deps.Admit): the commands
// with keys, the key-space walks and EXEC (its queue runs as one
// transaction; the commands queued after MULTI were not admitted one by
// one). Connection commands (PING, HELLO, AUTH...) are always answered.
func touchesStore(name string, def command) bool {
	return def.first > 0 || name == "scan" || name == "keys" || name == "dbsize" || name == "exec"
}

// clip shortens an argument quoted in an error as Redis does (128 bytes)
// and keeps the line a line.
func clip(b []byte) string {
	if len(b) > 128 {
		b = b[:128]
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(string(b))
}

// get is GetItem without the expiry.
func (s *Server) get(ctx context.Context, key []byte, level coordinator.Level) ([]byte, bool, error) {
	it, found, err := s.deps.Store.GetItem(ctx, key, level)
	return it.Value, found, err //nolint:wrapcheck // the store's errors are answered as they are
}

// ctx returns the context of one command's store calls.
func (s *Server) ctx(sess *session) (context.Context, context.CancelFunc) {
	return context.WithTimeout(sess.ctx, s.cfg.RequestTimeout)
}

// writeErr answers err in Redis's terms.
func writeErr(c redcon.Conn, err error) {
	msg := strings.NewReplacer("\r", " ", "\n", " ").Replace(err.Error())
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		c.WriteError(errNoAuth)
	case errors.Is(err, auth.ErrPermissionDenied):
		c.WriteError("NOPERM " + msg)
	case errors.Is(err, coordinator.ErrOverloaded), errors.Is(err, consensus.ErrOverloaded):
		// Refused at an admission bound, nothing done: Redis's word for
		// "busy, try again later".
		c.WriteError("BUSY " + msg)
	default:
		c.WriteError("ERR " + msg)
	}
}

func writeNull(c redcon.Conn, sess *session) {
	if sess.resp3 {
		c.WriteRaw([]byte("_\r\n"))
		return
	}
	c.WriteNull()
}

func writeValue(c redcon.Conn, sess *session, v []byte, found bool) {
	if !found {
		writeNull(c, sess)
		return
	}
	c.WriteBulk(v)
}

// writeMap writes a map (RESP3) or a flat array of pairs (RESP2).
func writeMap(c redcon.Conn, sess *session, n int) {
	if sess.resp3 {
		c.WriteRaw([]byte("%" + strconv.Itoa(n) + "\r\n"))
		return
	}
	c.WriteArray(2 * n)
}

func parseInt(b []byte) (int64, bool) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

func isWord(arg []byte, word string) bool { return strings.EqualFold(string(arg), word) }

// ---- connection commands ----

func cmdPing(_ *Server, c redcon.Conn, _ *session, args [][]byte) {
	switch len(args) {
	case 0:
		c.WriteString("PONG")
	case 1:
		c.WriteBulk(args[0])
	default:
		c.WriteError("ERR wrong number of arguments for 'ping' command")
	}
}

func cmdEcho(_ *Server, c redcon.Conn, _ *session, args [][]byte) { c.WriteBulk(args[0]) }

func cmdSelect(_ *Server, c redcon.Conn, _ *session, args [][]byte) {
	n, ok := parseInt(args[0])
	switch {
	case !ok:
		c.WriteError(errNotInteger)
	case n != 0:
		c.WriteError("ERR DB index is out of range")
	default:
		c.WriteString("OK")
	}
}

func cmdQuit(_ *Server, c redcon.Conn, sess *session, _ [][]byte) {
	c.WriteString("OK")
	sess.quit = true
	_ = c.Close() // flushes the OK first
}

func cmdHello(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	proto := 2
	if sess.resp3 {
		proto = 3
	}
	if len(args) > 0 {
		v, ok := parseInt(args[0])
		if !ok {
			c.WriteError("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 && v != 3 {
			c.WriteError("NOPROTO unsupported protocol version")
			return
		}
		proto = int(v)
		args = args[1:]
	}
	name := sess.name
	for len(args) > 0 {
		switch {
		case isWord(args[0], "AUTH") && len(args) >= 3:
			ctx, err := s.login(sess, string(args[1]), string(args[2]))
			if err != nil {
				writeAuthErr(c, err)
				return
			}
			sess.ctx = ctx
			args = args[3:]
		case isWord(args[0], "SETNAME") && len(args) >= 2:
			name = string(args[1])
			args = args[2:]
		default:
			c.WriteError("ERR Syntax error in HELLO option '" + clip(args[0]) + "'")
			return
		}
	}
	sess.name = name
	sess.resp3 = proto == 3
	writeMap(c, sess, 7)
	c.WriteBulkString("server")
	c.WriteBulkString("ringkv")
	c.WriteBulkString("version")
	c.WriteBulkString(s.cfg.Version)
	c.WriteBulkString("proto")
	c.WriteInt(proto)
	c.WriteBulkString("id")
	c.WriteInt64(sess.id)
	c.WriteBulkString("mode")
	c.WriteBulkString("standalone")
	c.WriteBulkString("role")
	c.WriteBulkString("master")
	c.WriteBulkString("modules")
	c.WriteArray(0)
}

func (s *Server) login(sess *session, user, password string) (context.Context, error) {
	if s.deps.Auth == nil {
		return nil, errNoPassword
	}
	ctx, cancel := s.ctx(sess)
	defer cancel()
	callerCtx, err := s.deps.Auth.Login(ctx, user, password)
	if err != nil {
		return nil, err //nolint:wrapcheck // answered by writeAuthErr
	}
	// Keep the caller, not the command's deadline: rebase on the
	// connection's lifetime.
	return detach{Context: sess.ctx, values: callerCtx}, nil
}

// detach is a context with parent's cancellation and values's values.
type detach struct {
	context.Context
	values context.Context
}

func (d detach) Value(key any) any { return d.values.Value(key) }

var errNoPassword = errors.New("no password configured")

func writeAuthErr(c redcon.Conn, err error) {
	switch {
	case errors.Is(err, errNoPassword):
		c.WriteError("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	case errors.Is(err, auth.ErrUnauthenticated):
		c.WriteError(errWrongPass)
	default:
		writeErr(c, err)
	}
}

func cmdAuth(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	user, password := "default", ""
	switch len(args) {
	case 1:
		password = string(args[0])
	case 2:
		user, password = string(args[0]), string(args[1])
	default:
		c.WriteError(errSyntax)
		return
	}
	ctx, err := s.login(sess, user, password)
	if err != nil {
		writeAuthErr(c, err)
		return
	}
	sess.ctx = ctx
	c.WriteString("OK")
}

func cmdClient(_ *Server, c redcon.Conn, sess *session, args [][]byte) {
	sub := strings.ToLower(string(args[0]))
	switch {
	case sub == "id" && len(args) == 1:
		c.WriteInt64(sess.id)
	case sub == "getname" && len(args) == 1:
		writeValue(c, sess, []byte(sess.name), sess.name != "")
	case sub == "setname" && len(args) == 2:
		if bytes.ContainsAny(args[1], " \n\r") {
			c.WriteError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		sess.name = string(args[1])
		c.WriteString("OK")
	case sub == "setinfo" && len(args) == 3:
		c.WriteString("OK") // library name and version: accepted, not kept
	case sub == "id" || sub == "getname" || sub == "setname" || sub == "setinfo":
		c.WriteError("ERR wrong number of arguments for 'client|" + sub + "' command")
	default:
		c.WriteError("ERR unknown subcommand '" + clip(args[0]) + "'. Try CLIENT HELP.")
	}
}

func cmdInfo(s *Server, c redcon.Conn, sess *session, _ [][]byte) {
	info := fmt.Sprintf("# Server\r\nredis_version:7.0.0\r\nringkv_version:%s\r\nredis_mode:standalone\r\nuptime_in_seconds:%d\r\n"+
		"\r\n# Clients\r\nconnected_clients:%d\r\n"+
		"\r\n# Replication\r\nrole:master\r\n"+
		"\r\n# Ringkv\r\nconsistency:%s\r\n",
		s.cfg.Version, int64(s.sinceStart().Seconds()), s.clients.Load(), sess.level)
	if sess.resp3 {
		c.WriteRaw([]byte("=" + strconv.Itoa(len(info)+4) + "\r\ntxt:" + info + "\r\n"))
		return
	}
	c.WriteBulkString(info)
}

func cmdCommand(s *Server, c redcon.Conn, _ *session, args [][]byte) {
	if len(args) > 0 {
		switch strings.ToLower(string(args[0])) {
		case "count":
			c.WriteInt(len(s.commands))
			return
		case "docs":
			c.WriteArray(0) // no docs: redis-cli does without hints
			return
		case "info":
			c.WriteArray(len(args) - 1)
			for _, a := range args[1:] {
				name := strings.ToLower(string(a))
				if def, ok := s.commands[name]; ok {
					writeCommandInfo(c, name, def)
				} else {
					c.WriteNull()
				}
			}
			return
		default:
			c.WriteError("ERR unknown subcommand '" + clip(args[0]) + "'. Try COMMAND HELP.")
			return
		}
	}
	c.WriteArray(len(s.commands))
	for name, def := range s.commands {
		writeCommandInfo(c, name, def)
	}
}

func writeCommandInfo(c redcon.Conn, name string, def command) {
	c.WriteArray(6)
	c.WriteBulkString(name)
	c.WriteInt(def.arity)
	c.WriteArray(len(def.flags))
	for _, f := range def.flags {
		c.WriteString(f)
	}
	c.WriteInt(def.first)
	c.WriteInt(def.last)
	c.WriteInt(def.step)
}

// cmdConfig answers CONFIG GET with nothing (redis-benchmark asks for
// "save" and "appendonly") and refuses the rest.
func cmdConfig(_ *Server, c redcon.Conn, _ *session, args [][]byte) {
	if isWord(args[0], "GET") {
		c.WriteArray(0)
		return
	}
	c.WriteError("ERR ringkv: CONFIG " + clip(args[0]) + " is not supported")
}

func cmdConsistency(_ *Server, c redcon.Conn, sess *session, args [][]byte) {
	switch len(args) {
	case 0:
		c.WriteBulkString(sess.level.String())
	case 1:
		l, err := coordinator.ParseLevel(string(args[0]))
		if err != nil || len(args[0]) == 0 {
			c.WriteError("ERR unknown consistency level '" + clip(args[0]) + "' (want one, quorum, all or linearizable)")
			return
		}
		sess.level = l
		c.WriteString("OK")
	default:
		c.WriteError("ERR wrong number of arguments for 'ringkv.consistency' command")
	}
}

// ---- expiry ----

func cmdTTL(unit time.Duration) func(*Server, redcon.Conn, *session, [][]byte) {
	return func(s *Server, c redcon.Conn, sess *session, args [][]byte) {
		ctx, cancel := s.ctx(sess)
		defer cancel()
		it, found, err := s.deps.Store.GetItem(ctx, args[0], sess.level)
		switch {
		case err != nil:
			writeErr(c, err)
		case !found:
			c.WriteInt(-2)
		case it.ExpiresAt.IsZero():
			c.WriteInt(-1)
		default:
			left := it.TTL(time.Now())
			c.WriteInt64(int64((left + unit/2) / unit)) // rounded, as Redis does
		}
	}
}

func cmdExpire(unit time.Duration) func(*Server, redcon.Conn, *session, [][]byte) {
	return func(s *Server, c redcon.Conn, sess *session, args [][]byte) {
		name := "expire"
		if unit == time.Millisecond {
			name = "pexpire"
		}
		n, ok := parseInt(args[1])
		if !ok {
			c.WriteError(errNotInteger)
			return
		}
		if len(args) > 2 {
			c.WriteError("ERR ringkv: " + strings.ToUpper(name) + " options (NX, XX, GT, LT) are not supported")
			return
		}
		if n > int64(coordinator.MaxTTL/unit) {
			c.WriteError(fmt.Sprintf(errExpireTime, name))
			return
		}
		ctx, cancel := s.ctx(sess)
		defer cancel()
		if n <= 0 { // Redis deletes the key
			_, found, err := s.get(ctx, args[0], sess.level)
			if err == nil && found {
				err = s.deps.Store.Delete(ctx, args[0], sess.level)
			}
			if err != nil {
				writeErr(c, err)
				return
			}
			c.WriteInt(boolInt(found))
			return
		}
		found, err := s.deps.Store.Expire(ctx, args[0], time.Duration(n)*unit, sess.level)
		if err != nil {
			writeErr(c, err)
			return
		}
		c.WriteInt(boolInt(found))
	}
}

// cmdPersist answers 1 when it removed an expiry, 0 when the key is
// absent or has none.
func cmdPersist(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	it, found, err := s.deps.Store.GetItem(ctx, args[0], sess.level)
	if err == nil && found && !it.ExpiresAt.IsZero() {
		found, err = s.deps.Store.Persist(ctx, args[0], sess.level)
	} else {
		found = false
	}
	if err != nil {
		writeErr(c, err)
		return
	}
	c.WriteInt(boolInt(found))
}

// expiry is what a write does to the key's expiry.
type expiry struct {
	keep bool   // keep the key's current expiry (KEEPTTL, INCR, APPEND)
	exp  Expiry // else: this one (zero: never expires)
}

// parseExpiry reads one of EX, PX, EXAT, PXAT (with its argument) or
// KEEPTTL at args[0]; it returns how many arguments it used (0: none of
// them) or an error text.
func parseExpiry(cmd string, args [][]byte, e *expiry) (int, string) {
	word := strings.ToUpper(string(args[0]))
	if word == "KEEPTTL" {
		e.keep = true
		return 1, ""
	}
	var unit time.Duration
	abs := false
	switch word {
	case "EX":
		unit = time.Second
	case "PX":
		unit = time.Millisecond
	case "EXAT":
		unit, abs = time.Second, true
	case "PXAT":
		unit, abs = time.Millisecond, true
	default:
		return 0, ""
	}
	if len(args) < 2 {
		return 0, errSyntax
	}
	n, ok := parseInt(args[1])
	if !ok {
		return 0, errNotInteger
	}
	if n <= 0 || n > int64(coordinator.MaxTTL/unit) {
		return 0, fmt.Sprintf(errExpireTime, cmd)
	}
	if abs {
		e.exp = Expiry{At: time.Unix(0, 0).Add(time.Duration(n) * unit)}
	} else {
		e.exp = Expiry{TTL: time.Duration(n) * unit}
	}
	return 2, ""
}

// ---- strings ----

func cmdGet(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	v, found, err := s.get(ctx, args[0], sess.level)
	if err != nil {
		writeErr(c, err)
		return
	}
	writeValue(c, sess, v, found)
}

func cmdStrlen(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	v, _, err := s.get(ctx, args[0], sess.level)
	if err != nil {
		writeErr(c, err)
		return
	}
	c.WriteInt(len(v))
}

func cmdType(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	_, found, err := s.get(ctx, args[0], sess.level)
	switch {
	case err != nil:
		writeErr(c, err)
	case found:
		c.WriteString("string")
	default:
		c.WriteString("none")
	}
}

// setOpts are SET's options.
type setOpts struct {
	nx, xx, get bool
}

func cmdSet(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	var o setOpts
	var e expiry
	expirySet := false
	for rest := args[2:]; len(rest) > 0; {
		switch strings.ToUpper(string(rest[0])) {
		case "NX":
			o.nx = true
		case "XX":
			o.xx = true
		case "GET":
			o.get = true
		default:
			n, msg := parseExpiry("set", rest, &e)
			if msg == "" && (n == 0 || expirySet) {
				msg = errSyntax
			}
			if msg != "" {
				c.WriteError(msg)
				return
			}
			expirySet = true
			rest = rest[n:]
			continue
		}
		rest = rest[1:]
	}
	if o.nx && o.xx {
		c.WriteError(errSyntax)
		return
	}
	key, val := args[0], args[1]
	ctx, cancel := s.ctx(sess)
	defer cancel()
	if !o.nx && !o.xx && !o.get && !e.keep {
		if err := s.deps.Store.Set(ctx, key, val, sess.level, e.exp); err != nil {
			writeErr(c, err)
			return
		}
		c.WriteString("OK")
		return
	}
	var old []byte
	var had, done bool
	err := s.modify(ctx, key, e, func(cur []byte, found bool) ([]byte, bool, error) {
		old, had = cur, found
		done = (!o.nx || !found) && (!o.xx || found) // this round's answer: a lost round starts over
		return val, done, nil
	})
	switch {
	case err != nil:
		writeErr(c, err)
	case o.get:
		writeValue(c, sess, old, had)
	case done:
		c.WriteString("OK")
	default:
		writeNull(c, sess)
	}
}

func cmdSetNX(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	res, err := s.deps.Store.CompareAndSet(ctx, args[0], nil, args[1], Expiry{})
	if err != nil {
		writeErr(c, err)
		return
	}
	c.WriteInt(boolInt(res.Swapped))
}

func cmdGetSet(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	var old []byte
	var had bool
	err := s.modify(ctx, args[0], expiry{}, func(cur []byte, found bool) ([]byte, bool, error) {
		old, had = cur, found
		return args[1], true, nil
	})
	if err != nil {
		writeErr(c, err)
		return
	}
	writeValue(c, sess, old, had)
}

// cmdGetDel reads the key at linearizable, then deletes it with a
// one-key transaction that holds only if the value is still the one read
// (a compare-and-delete), retrying when another write came in between:
// the value answered is the one deleted. On a cluster with a member too
// old for transactions it falls back to a read then a delete (a write
// landing between the two is then deleted unseen).
func cmdGetDel(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	key := args[0]
	for {
		v, found, err := s.get(ctx, key, coordinator.Linearizable)
		if err == nil && found {
			var res coordinator.TxnResult
			res, err = s.deps.Store.Txn(ctx, &coordinator.TxnRequest{
				Compares: []consensus.Compare{{Kind: consensus.CompareValue, Key: key, Value: v}},
				Success:  []coordinator.TxnOp{{Kind: consensus.OpDelete, Key: key}},
			})
			if errors.Is(err, coordinator.ErrNotUpgraded) {
				err = s.deps.Store.Delete(ctx, key, coordinator.Linearizable)
			} else if err == nil && !res.Succeeded {
				continue // changed since the read: read it again
			}
		}
		if err != nil {
			writeErr(c, err)
			return
		}
		writeValue(c, sess, v, found)
		return
	}
}

func cmdAppend(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	var n int
	err := s.modify(ctx, args[0], expiry{keep: true}, func(cur []byte, _ bool) ([]byte, bool, error) {
		next := append(append(make([]byte, 0, len(cur)+len(args[1])), cur...), args[1]...)
		n = len(next)
		return next, true, nil
	})
	if err != nil {
		writeErr(c, err)
		return
	}
	c.WriteInt(n)
}

// replyError is an error answered as is (a Redis error text).
type replyError string

func (e replyError) Error() string { return string(e) }

func cmdIncr(sign int64, by bool) func(*Server, redcon.Conn, *session, [][]byte) {
	return func(s *Server, c redcon.Conn, sess *session, args [][]byte) {
		delta := sign
		if by {
			d, ok := parseInt(args[1])
			if !ok || (sign < 0 && d == math.MinInt64) {
				c.WriteError(errNotInteger)
				return
			}
			delta = sign * d
		}
		ctx, cancel := s.ctx(sess)
		defer cancel()
		var result int64
		err := s.modify(ctx, args[0], expiry{keep: true}, func(cur []byte, found bool) ([]byte, bool, error) {
			var n int64
			if found {
				v, ok := parseInt(cur)
				if !ok || len(cur) > 20 {
					return nil, false, replyError(errNotInteger)
				}
				n = v
			}
			if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
				return nil, false, replyError(errOverflow)
			}
			result = n + delta
			return strconv.AppendInt(nil, result, 10), true, nil
		})
		var re replyError
		switch {
		case errors.As(err, &re):
			c.WriteError(string(re))
		case err != nil:
			writeErr(c, err)
		default:
			c.WriteInt64(result)
		}
	}
}

// errContended is returned when a read-modify-write lost CASRetries
// races in a row.
var errContended = errors.New("ringkv: too much contention on the key, try again")

// modify runs a read-modify-write at linearizable: it reads key, asks
// change for the new value (write false: leave the key alone) and swaps
// it in with compare-and-set, with e's expiry, starting over when another
// write came first.
func (s *Server) modify(ctx context.Context, key []byte, e expiry, change func(cur []byte, found bool) (next []byte, write bool, err error)) error {
	for attempt := range s.cfg.CASRetries {
		it, found, err := s.deps.Store.GetItem(ctx, key, coordinator.Linearizable)
		if err != nil {
			return err //nolint:wrapcheck // the store's errors are answered as they are
		}
		next, write, err := change(it.Value, found)
		if err != nil || !write {
			return err
		}
		var expected *[]byte
		if found {
			expected = &it.Value
		}
		exp := e.exp
		if e.keep && found {
			exp = Expiry{At: it.ExpiresAt}
		}
		res, err := s.deps.Store.CompareAndSet(ctx, key, expected, next, exp)
		if err != nil {
			return err //nolint:wrapcheck // as above
		}
		if res.Swapped {
			return nil
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
	return errContended
}

// backoff waits a random time up to 2^attempt ms (at most 32 ms) after
// a lost compare-and-set, so that contending writers spread out; it
// returns ctx's error if ctx ends first.
func backoff(ctx context.Context, attempt int) error {
	limit := time.Millisecond << min(attempt, 5)
	t := time.NewTimer(rand.N(limit))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", errContended, ctx.Err())
	case <-t.C:
		return nil
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ---- multi-key ----

// each runs fn for i in [0, n) concurrently, at most 32 at a time.
func each(n int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func cmdMGet(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	vals := make([][]byte, len(args))
	found := make([]bool, len(args))
	if ms, ok := s.deps.Store.(MultiStore); ok {
		// The coordinator takes each key once: ask for the distinct keys
		// and answer every position from them.
		keys, at := distinct(args)
		if len(keys) <= consensus.MaxTxnKeys || sess.level == coordinator.Linearizable {
			res, err := ms.MGet(ctx, keys, sess.level)
			if err != nil {
				writeErr(c, err)
				return
			}
			for i := range args {
				r := res[at[i]]
				vals[i], found[i] = r.Value, r.Found
			}
			writeValues(c, sess, vals, found)
			return
		}
	}
	errs := make([]error, len(args))
	each(len(args), func(i int) {
		vals[i], found[i], errs[i] = s.get(ctx, args[i], sess.level)
	})
	if err := firstErr(errs); err != nil {
		writeErr(c, err)
		return
	}
	writeValues(c, sess, vals, found)
}

func writeValues(c redcon.Conn, sess *session, vals [][]byte, found []bool) {
	c.WriteArray(len(vals))
	for i := range vals {
		writeValue(c, sess, vals[i], found[i])
	}
}

// distinct returns keys' distinct members in first-seen order, and for
// each of keys its index among them.
func distinct(keys [][]byte) (out [][]byte, at []int) {
	at = make([]int, len(keys))
	seen := make(map[string]int, len(keys))
	for i, k := range keys {
		j, ok := seen[string(k)]
		if !ok {
			j = len(out)
			seen[string(k)] = j
			out = append(out, k)
		}
		at[i] = j
	}
	return out, at
}

// msetPairs returns MSET's pairs with each key once, its last value
// winning (as Redis applies them in order).
func msetPairs(args [][]byte) []coordinator.MSetPair {
	keys := make([][]byte, len(args)/2)
	for i := range keys {
		keys[i] = args[2*i]
	}
	uniq, at := distinct(keys)
	pairs := make([]coordinator.MSetPair, len(uniq))
	for i := range keys {
		pairs[at[i]] = coordinator.MSetPair{Key: keys[i], Value: args[2*i+1]}
	}
	return pairs
}

// cmdMSet writes the pairs: at linearizable one transaction (atomic), at
// the other levels logged batches of at most consensus.MaxTxnKeys keys
// (each applied whole eventually, no isolation), through the Store's
// MultiStore; without it key by key.
func cmdMSet(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	if len(args)%2 != 0 {
		c.WriteError("ERR wrong number of arguments for 'mset' command")
		return
	}
	ctx, cancel := s.ctx(sess)
	defer cancel()
	if ms, ok := s.deps.Store.(MultiStore); ok {
		pairs := msetPairs(args)
		step := consensus.MaxTxnKeys
		if sess.level == coordinator.Linearizable {
			step = len(pairs) // one transaction; over the limit it is refused
		}
		for len(pairs) > 0 {
			n := min(step, len(pairs))
			if err := ms.MSet(ctx, pairs[:n], sess.level); err != nil {
				writeErr(c, err)
				return
			}
			pairs = pairs[n:]
		}
		c.WriteString("OK")
		return
	}
	errs := make([]error, len(args)/2)
	each(len(args)/2, func(i int) {
		errs[i] = s.deps.Store.Set(ctx, args[2*i], args[2*i+1], sess.level, Expiry{})
	})
	if err := firstErr(errs); err != nil {
		writeErr(c, err)
		return
	}
	c.WriteString("OK")
}

// cmdMSetNX is one transaction: every key absent, then every set
// (atomic). While a member is too old for transactions it falls back to
// msetNXByCAS.
func cmdMSetNX(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	if len(args)%2 != 0 {
		c.WriteError("ERR wrong number of arguments for 'msetnx' command")
		return
	}
	ctx, cancel := s.ctx(sess)
	defer cancel()
	pairs := msetPairs(args)
	req := &coordinator.TxnRequest{}
	for _, p := range pairs {
		req.Compares = append(req.Compares, consensus.Compare{Kind: consensus.CompareAbsent, Key: p.Key})
		req.Success = append(req.Success, coordinator.TxnOp{Kind: consensus.OpSet, Key: p.Key, Value: p.Value})
	}
	res, err := s.deps.Store.Txn(ctx, req)
	switch {
	case errors.Is(err, coordinator.ErrNotUpgraded):
		msetNXByCAS(ctx, s, c, args)
	case err != nil:
		writeErr(c, err)
	default:
		c.WriteInt(boolInt(res.Succeeded))
	}
}

// msetNXByCAS checks every key absent at linearizable, then puts each with
// put-if-absent. It is not atomic across keys: a key taken between the
// check and its put stays as the other writer left it (answer 0), and the
// keys put before stay put.
func msetNXByCAS(ctx context.Context, s *Server, c redcon.Conn, args [][]byte) {
	n := len(args) / 2
	found := make([]bool, n)
	errs := make([]error, n)
	each(n, func(i int) {
		_, found[i], errs[i] = s.get(ctx, args[2*i], coordinator.Linearizable)
	})
	if err := firstErr(errs); err != nil {
		writeErr(c, err)
		return
	}
	for _, f := range found {
		if f {
			c.WriteInt(0)
			return
		}
	}
	swapped := make([]bool, n)
	each(n, func(i int) {
		var res coordinator.CASResult
		res, errs[i] = s.deps.Store.CompareAndSet(ctx, args[2*i], nil, args[2*i+1], Expiry{})
		swapped[i] = res.Swapped
	})
	if err := firstErr(errs); err != nil {
		writeErr(c, err)
		return
	}
	for _, ok := range swapped {
		if !ok {
			c.WriteInt(0)
			return
		}
	}
	c.WriteInt(1)
}

func cmdDel(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	found := make([]bool, len(args))
	errs := make([]error, len(args))
	each(len(args), func(i int) {
		if _, found[i], errs[i] = s.get(ctx, args[i], sess.level); errs[i] == nil && found[i] {
			errs[i] = s.deps.Store.Delete(ctx, args[i], sess.level)
		}
	})
	if err := firstErr(errs); err != nil {
		writeErr(c, err)
		return
	}
	n := 0
	for _, f := range found {
		n += boolInt(f)
	}
	c.WriteInt(n)
}

func cmdExists(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	found := make([]bool, len(args))
	errs := make([]error, len(args))
	each(len(args), func(i int) {
		_, found[i], errs[i] = s.get(ctx, args[i], sess.level)
	})
	if err := firstErr(errs); err != nil {
		writeErr(c, err)
		return
	}
	n := 0
	for _, f := range found {
		n += boolInt(f)
	}
	c.WriteInt(n)
}

// cmdCAS is RINGKV.CAS key expected new [EX s|PX ms|EXAT t|PXAT t]: 1
// if the key held expected and now holds new, else 0.
func cmdCAS(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	var e expiry
	if len(args) > 3 {
		n, msg := parseExpiry("ringkv.cas", args[3:], &e)
		if msg == "" && (n == 0 || e.keep || len(args) != 3+n) {
			msg = errSyntax
		}
		if msg != "" {
			c.WriteError(msg)
			return
		}
	}
	ctx, cancel := s.ctx(sess)
	defer cancel()
	expected := args[1]
	res, err := s.deps.Store.CompareAndSet(ctx, args[0], &expected, args[2], e.exp)
	if err != nil {
		writeErr(c, err)
		return
	}
	c.WriteInt(boolInt(res.Swapped))
}

// ---- keyspace ----

// pattern splits a glob into the literal prefix ringkv lists by and the
// glob itself (nil when the prefix alone decides).
func pattern(p []byte) (prefix []byte, glob string) {
	i := bytes.IndexAny(p, `*?[\`)
	if i < 0 {
		return p, string(p) // an exact key: still matched (the list has every key with it as a prefix)
	}
	if i == len(p)-1 && p[i] == '*' {
		return p[:i], ""
	}
	return p[:i], string(p)
}

func cmdScan(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	cursor, err := strconv.ParseUint(string(args[0]), 10, 64)
	if err != nil {
		c.WriteError("ERR invalid cursor")
		return
	}
	var from []byte
	if cursor != 0 {
		last, ok := s.cursors.get(cursor)
		if !ok {
			c.WriteError("ERR invalid cursor (ringkv forgets a cursor after many newer ones: start over from 0)")
			return
		}
		from = append(append([]byte(nil), last...), 0)
	}
	var prefix []byte
	var glob string
	count := s.cfg.ScanCount
	for rest := args[1:]; len(rest) > 0; rest = rest[2:] {
		if len(rest) < 2 {
			c.WriteError(errSyntax)
			return
		}
		switch strings.ToUpper(string(rest[0])) {
		case "MATCH":
			prefix, glob = pattern(rest[1])
		case "COUNT":
			n, ok := parseInt(rest[1])
			if !ok {
				c.WriteError(errNotInteger)
				return
			}
			if n < 1 {
				c.WriteError(errSyntax)
				return
			}
			count = int(min(n, int64(s.cfg.MaxScanCount)))
		case "TYPE":
			if !isWord(rest[1], "string") {
				prefix, glob = []byte{0xff, 0xff}, "\x00" // nothing but strings here
			}
		default:
			c.WriteError(errSyntax)
			return
		}
	}
	ctx, cancel := s.ctx(sess)
	defer cancel()
	pairs, err := s.deps.Store.ListFrom(ctx, prefix, from, count, sess.level)
	if err != nil {
		writeErr(c, err)
		return
	}
	var next uint64
	if len(pairs) == count {
		next = s.cursors.put(pairs[len(pairs)-1].Key)
	}
	c.WriteArray(2)
	c.WriteBulkString(strconv.FormatUint(next, 10))
	keys := matching(pairs, glob)
	c.WriteArray(len(keys))
	for _, k := range keys {
		c.WriteBulk(k)
	}
}

func matching(pairs []coordinator.Pair, glob string) [][]byte {
	keys := make([][]byte, 0, len(pairs))
	for _, p := range pairs {
		if glob == "" || match.Match(string(p.Key), glob) {
			keys = append(keys, p.Key)
		}
	}
	return keys
}

// all lists every key with prefix matching glob, at most max.
func (s *Server) all(sess *session, level coordinator.Level, prefix []byte, glob string, max int) ([][]byte, error) {
	ctx, cancel := s.ctx(sess)
	defer cancel()
	var keys [][]byte
	var from []byte
	for {
		pairs, err := s.deps.Store.ListFrom(ctx, prefix, from, s.cfg.MaxScanCount, level)
		if err != nil {
			return nil, err //nolint:wrapcheck // answered as is
		}
		keys = append(keys, matching(pairs, glob)...)
		if len(keys) > max {
			return nil, fmt.Errorf("more than %d keys: use SCAN", max)
		}
		if len(pairs) < s.cfg.MaxScanCount {
			return keys, nil
		}
		from = append(append([]byte(nil), pairs[len(pairs)-1].Key...), 0)
	}
}

func cmdKeys(s *Server, c redcon.Conn, sess *session, args [][]byte) {
	prefix, glob := pattern(args[0])
	keys, err := s.all(sess, sess.level, prefix, glob, s.cfg.MaxKeys)
	if err != nil {
		writeErr(c, err)
		return
	}
	c.WriteArray(len(keys))
	for _, k := range keys {
		c.WriteBulk(k)
	}
}

// cmdDBSize counts the keys with a scan at level one: each partition is
// read from one replica, so the count can miss writes that replica has
// not received yet (an estimate, documented); it costs a full scan.
func cmdDBSize(s *Server, c redcon.Conn, sess *session, _ [][]byte) {
	keys, err := s.all(sess, coordinator.One, nil, "", s.cfg.MaxKeys)
	if err != nil {
		writeErr(c, err)
		return
	}
	c.WriteInt(len(keys))
}
