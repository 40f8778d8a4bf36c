package consensus

import (
	"bytes"
	"sync/atomic"

	"github.com/ringkv/ringkv/replica"
)

// intentWatch lets a group's intent checks (a write's, under its key's
// latch after the term's barrier; a linearizable read's, once its read
// index is applied) skip the store read of the key's intent while this
// node's copy of the partition can hold none: a read of an absent key,
// which walks every memtable and level of the store, on every write and
// linearizable read of a partition that transactions do not touch.
//
// Only the group's FSM writes the group's intents (clients cannot write
// reserved keys; an older intent brought back by anti-entropy loses to
// the newer resolve). The FSM counts the applies that write a live intent
// (and snapshot restores, which may bring intents) when they begin and
// when they end. The leader's intent sweep (SweepIntents, each second)
// records, when its scan of the partition's intents finds none live and
// no such apply was in flight as it began, the count it saw: while no
// apply has begun since, no live intent exists. Any later apply that
// writes an intent begins before its records are visible, so a check
// that loads the count after that cannot take the fast path; and a check
// that must see the intent loads the count after the apply (the latch,
// or the read index). A stale mark costs only the store read.
type intentWatch struct {
	begun, ended atomic.Uint64
	// clean is begun+1 as the last clean scan saw it; 0: none yet.
	clean atomic.Uint64
}

func (w *intentWatch) begin() { w.begun.Add(1) }
func (w *intentWatch) end()   { w.ended.Add(1) }

// none reports whether no intent can be live: no intent write has begun
// since a scan found none.
func (w *intentWatch) none() bool {
	c := w.clean.Load()
	return c != 0 && w.begun.Load()+1 == c
}

// scan runs a scan of the partition's intents, which reports whether it
// found any live one (or could not tell), and marks the watch clean when
// it found none and no intent write was in flight as it began.
func (w *intentWatch) scan(found func() bool) {
	b := w.begun.Load()
	quiet := w.ended.Load() == b
	if !found() && quiet {
		w.clean.Store(b + 1)
	}
}

// anyIntent reports whether entries write a live intent.
func anyIntent(entries []replica.Entry) bool {
	for i := range entries {
		if !entries[i].Record.Tombstone && bytes.HasPrefix(entries[i].Key, []byte(intentPrefix)) {
			return true
		}
	}
	return false
}
