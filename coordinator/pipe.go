package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"storj.io/drpc/drpcerr"

	"github.com/ringkv/ringkv/internal/rpcconn"
	"github.com/ringkv/ringkv/proto/kvpb"
)

// maxPipeInflight bounds the operations of one Pipe stream that run at
// once. Beyond it the stream's reader stops reading, and TCP holds the
// client back.
const maxPipeInflight = 1024

// Pipe serves a Pipe stream: every operation that arrives is admitted
// (the node's client budget) or refused at once by the reader, and an
// admitted one runs at once on a worker of the stream (workers are started as needed, up to
// maxPipeInflight, and kept until the stream ends, so their stacks are
// reused), and its answer goes out as soon as it finishes, in whatever
// order they finish. One writer sends the answers: each message carries
// every answer ready when it is written, in one write to the socket.
//
// An operation's id is the client's handle on its answer, so it must be
// unique among the stream's operations in flight: a message that repeats
// an id, within itself or of an operation still running, is refused whole
// (none of its operations runs) and ends the stream with
// INVALID_ARGUMENT, since its answers could not be told apart. An id may
// be used again once its answer was queued.
//
// The stream ends when the client closes its side (after every operation
// it sent is answered), when the connection fails, or on a message of
// more than maxBatchOps operations or with a duplicate id (refused with
// INVALID_ARGUMENT; the operations already running are still answered).
// Operations still running when the connection fails are cancelled, as
// a Do whose client went away is.
func (s *ClientServer) Pipe(stream kvpb.DRPCClient_PipeStream) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	p := &pipeServer{
		s: s, stream: stream, ctx: ctx, cancel: cancel,
		work: make(chan pipeWork),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		p.writer()
	}()
	err := p.read()
	close(p.work)
	p.workers.Wait() // every operation handed over is answered
	close(p.done)
	<-writerDone
	if err == nil {
		err = p.writeErr
	}
	return err
}

// pipeServer is the state of one Pipe stream on the node.
type pipeServer struct {
	s      *ClientServer
	stream kvpb.DRPCClient_PipeStream
	ctx    context.Context // the stream's; cancelled when it fails
	cancel context.CancelFunc

	work    chan pipeWork // to the workers; closed when reading ends
	workers sync.WaitGroup
	started int // workers started; owned by the reader

	mu       sync.Mutex
	inflight map[uint64]struct{}      // ids of operations handed over and not yet answered
	queue    []*kvpb.ClientPipeResult // answers not yet written
	wake     chan struct{}            // buffered(1): queue was added to
	done     chan struct{}            // closed when every worker has finished

	writeErr error // owned by the writer until done is closed and it returns
}

// read receives operations and hands each to a worker. It returns nil when
// the client closed its side.
func (p *pipeServer) read() error {
	for {
		req, err := p.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err //nolint:wrapcheck // the stream's own error ends the stream
		}
		if n := len(req.GetOps()); n > maxBatchOps {
			err := fmt.Errorf("%w: pipe message of %d operations, limit %d", ErrInvalidArgument, n, maxBatchOps)
			return drpcerr.WithCode(err, uint64(kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT))
		}
		if err := p.claimIDs(req.GetOps()); err != nil {
			return drpcerr.WithCode(err, uint64(kvpb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT))
		}
		for _, op := range req.GetOps() {
			// Admission first, here: a refused operation is answered
			// at once without a worker (under a flood most are, and a
			// hand-off to a worker per refusal took CPU from the
			// admitted ones).
			release, refused := p.s.admit(op.GetOp())
			if refused != nil {
				p.answer(op.GetId(), refused)
				continue
			}
			w := pipeWork{op: op, release: release}
			// A worker waiting on the channel takes op at once. Only when
			// none is waiting does the reader start one (within the bound)
			// and wait for the first to be free. (A count of idle workers
			// would be stale: a worker counted idle may just have taken
			// the previous operation, and op would wait behind it.)
			select {
			case p.work <- w:
				continue
			default:
			}
			if p.started < maxPipeInflight {
				p.started++
				p.workers.Add(1)
				go p.worker()
			}
			select {
			case p.work <- w:
			case <-p.ctx.Done():
				w.release()
				// Forget its id; nothing is written after a failure.
				p.answer(op.GetId(), nil)
				return p.ctx.Err() //nolint:wrapcheck // the stream failed
			}
		}
	}
}

// claimIDs marks ops' ids in flight, or marks none and returns an error
// wrapping ErrInvalidArgument when one repeats another of ops or of an
// operation still in flight.
func (p *pipeServer) claimIDs(ops []*kvpb.ClientPipeOp) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight == nil {
		p.inflight = make(map[uint64]struct{})
	}
	for i, op := range ops {
		if _, dup := p.inflight[op.GetId()]; dup {
			for _, o := range ops[:i] {
				delete(p.inflight, o.GetId())
			}
			return fmt.Errorf("%w: pipe operation id %d is already in flight on this stream (ids must be unique among unanswered operations); the message was not run", ErrInvalidArgument, op.GetId())
		}
		p.inflight[op.GetId()] = struct{}{}
	}
	return nil
}

// worker runs operations until reading ends.
func (p *pipeServer) worker() {
	defer p.workers.Done()
	for {
		w, ok := <-p.work
		if !ok {
			return
		}
		ctx, cancel := p.s.budget(p.ctx, w.op.GetTimeoutMicros())
		res := p.s.runAdmitted(ctx, w.op.GetOp())
		cancel()
		w.release()
		p.answer(w.op.GetId(), res)
	}
}

// pipeWork is an admitted operation and the release of its admission.
type pipeWork struct {
	op      *kvpb.ClientPipeOp
	release func()
}

// answer queues op id's result (none when res is nil: the id is only
// forgotten) for the writer and wakes it.
func (p *pipeServer) answer(id uint64, res *kvpb.ClientResult) {
	p.mu.Lock()
	if res != nil {
		p.queue = append(p.queue, &kvpb.ClientPipeResult{Id: id, Result: res})
	}
	delete(p.inflight, id)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// writer sends the answers as they come, and what is left once every
// worker has finished. After a failed write it cancels the stream's
// context and drops what follows.
func (p *pipeServer) writer() {
	var spare []*kvpb.ClientPipeResult
	for {
		last := false
		select {
		case <-p.wake:
			// Let the workers that are about to answer do so: one message
			// then carries their answers too.
			runtime.Gosched()
		case <-p.done:
			last = true
		}
		p.mu.Lock()
		batch := p.queue
		p.queue = spare[:0]
		p.mu.Unlock()
		if len(batch) > 0 && p.writeErr == nil {
			err := p.stream.Send(&kvpb.ClientPipeResponse{Header: p.s.header(), Results: batch})
			if err == nil {
				err = rpcconn.Flush(p.stream)
			}
			if err != nil {
				p.writeErr = fmt.Errorf("pipe answer: %w", err)
				p.cancel()
			}
		}
		clear(batch)
		spare = batch
		if last {
			return
		}
	}
}
