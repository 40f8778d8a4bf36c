package resp

import (
	"strings"
	"sync"

	"github.com/tidwall/redcon"
)

// maxBatchParallel bounds the commands of one connection's pipeline that
// run at once.
const maxBatchParallel = 16

// batch runs a pipeline of commands, answering in order. Runs of data
// commands whose keys are all distinct run concurrently, each into a
// buffer of its own, and the buffers are written in order; any other
// command (or one touching a key of the run) first waits for the run, so
// every key sees its commands in the order they were sent, and session
// commands (HELLO, AUTH, RINGKV.CONSISTENCY...) apply exactly between
// the commands around them. Inside MULTI every command is dispatched in
// order, so the queue keeps the order sent.
func (s *Server) batch(c redcon.Conn, sess *session, cmds []redcon.Command) {
	var group []redcon.Command
	keys := map[string]struct{}{}
	flush := func() {
		s.runGroup(c, sess, group)
		group = group[:0]
		clear(keys)
	}
	for _, cmd := range cmds {
		if sess.quit {
			return
		}
		def, ok := s.commands[strings.ToLower(string(cmd.Args[0]))]
		if !ok || !def.data || sess.multi.active {
			flush()
			s.dispatch(c, sess, cmd)
			continue
		}
		ks := commandKeys(def, cmd.Args)
		for _, k := range ks {
			if _, dup := keys[k]; dup {
				flush()
				break
			}
		}
		for _, k := range ks {
			keys[k] = struct{}{}
		}
		group = append(group, cmd)
	}
	flush()
}

// commandKeys returns the key arguments of a command (by COMMAND's first,
// last and step).
func commandKeys(def command, args [][]byte) []string {
	if def.first == 0 || def.first >= len(args) {
		return nil
	}
	last := def.last
	if last < 0 {
		last = len(args) + last
	}
	last = min(last, len(args)-1)
	var ks []string
	for i := def.first; i <= last; i += max(def.step, 1) {
		ks = append(ks, string(args[i]))
	}
	return ks
}

func (s *Server) runGroup(c redcon.Conn, sess *session, group []redcon.Command) {
	switch len(group) {
	case 0:
		return
	case 1:
		s.dispatch(c, sess, group[0])
		return
	}
	bufs := make([]*bufConn, len(group))
	sem := make(chan struct{}, maxBatchParallel)
	var wg sync.WaitGroup
	for i, cmd := range group {
		bufs[i] = &bufConn{Conn: c, w: redcon.NewWriter(nil)}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.dispatch(bufs[i], sess, cmd)
		}()
	}
	wg.Wait()
	for _, b := range bufs {
		c.WriteRaw(b.w.Buffer())
	}
}

// bufConn is a connection whose replies go to a buffer of their own; the
// rest (context, address) is the real connection's.
type bufConn struct {
	redcon.Conn
	w *redcon.Writer
}

func (b *bufConn) WriteString(str string)      { b.w.WriteString(str) }
func (b *bufConn) WriteBulk(bulk []byte)       { b.w.WriteBulk(bulk) }
func (b *bufConn) WriteBulkString(bulk string) { b.w.WriteBulkString(bulk) }
func (b *bufConn) WriteInt(num int)            { b.w.WriteInt(num) }
func (b *bufConn) WriteInt64(num int64)        { b.w.WriteInt64(num) }
func (b *bufConn) WriteUint64(num uint64)      { b.w.WriteUint64(num) }
func (b *bufConn) WriteError(msg string)       { b.w.WriteError(msg) }
func (b *bufConn) WriteArray(count int)        { b.w.WriteArray(count) }
func (b *bufConn) WriteNull()                  { b.w.WriteNull() }
func (b *bufConn) WriteRaw(data []byte)        { b.w.WriteRaw(data) }
func (b *bufConn) WriteAny(v any)              { b.w.WriteAny(v) }
