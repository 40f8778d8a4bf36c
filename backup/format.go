package backup

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/ringkv/ringkv/internal/crc"
	"github.com/ringkv/ringkv/internal/varint"

	"github.com/ringkv/ringkv/replica"
)

// A backup file (one per source partition, "p00042.rkb") is:
//
//	magic   8 bytes  "RKVBAK01"
//	frame*  until the end of the file
//
// and each frame, one record:
//
//	uvarint  length of body
//	body     uvarint len(key), key, the record in replica's encoding
//	         (version, flags, HLC timestamp, expiry, node id, value,
//	         its own CRC-32C)
//	4 bytes  CRC-32C (Castagnoli) of body, big-endian
//
// Records are in key order. The frame checksum covers the key as well as
// the record; the manifest holds each file's record count, size and
// SHA-256, which catch a truncated or reordered file.
const (
	fileMagic = "RKVBAK01"
	// MaxFrameBytes is the largest frame body a reader accepts: a corrupt
	// length never makes it allocate more.
	MaxFrameBytes = 64 << 20
)

// Writer writes one backup file. It is not safe for concurrent use.
type Writer struct {
	w       *bufio.Writer
	sum     hash.Hash
	buf     []byte
	records int64
	bytes   int64
	lastKey []byte
}

// NewWriter starts a backup file on w, writing its header. The caller
// closes w after Flush.
func NewWriter(w io.Writer) (*Writer, error) {
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 256<<10)
	wr := &Writer{w: bw, sum: sum}
	if _, err := bw.WriteString(fileMagic); err != nil {
		return nil, fmt.Errorf("write header: %w", err)
	}
	wr.bytes = int64(len(fileMagic))
	return wr, nil
}

// Write appends one record. Keys must come in strictly increasing order.
func (w *Writer) Write(key []byte, rec replica.Record) error {
	if w.records > 0 && string(key) <= string(w.lastKey) {
		return fmt.Errorf("backup: keys out of order in a file (a key of %d bytes after one of %d)", len(key), len(w.lastKey))
	}
	w.lastKey = append(w.lastKey[:0], key...)
	body := binary.AppendUvarint(w.buf[:0], uint64(len(key)))
	body = append(body, key...)
	body = rec.AppendBinary(body)
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(body)))
	frame := append(hdr[:n:n], body...)
	frame = binary.BigEndian.AppendUint32(frame, crc.Sum(body))
	if _, err := w.w.Write(frame); err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	w.buf = body[:0]
	w.records++
	w.bytes += int64(len(frame))
	return nil
}

// Flush writes what is buffered. Records, Bytes and SHA256 describe the
// file once it returns.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// Records returns the records written.
func (w *Writer) Records() int64 { return w.records }

// Bytes returns the file's size so far.
func (w *Writer) Bytes() int64 { return w.bytes }

// SHA256 returns the hex SHA-256 of what was flushed.
func (w *Writer) SHA256() string { return hex.EncodeToString(w.sum.Sum(nil)) }

// Reader reads one backup file. It is not safe for concurrent use.
type Reader struct {
	r       *bufio.Reader
	sum     hash.Hash
	buf     []byte
	records int64
	bytes   int64
	lastKey []byte
}

// NewReader starts reading a backup file from r, checking its header.
// Errors: ErrCorrupt (wrapped) for a wrong header.
func NewReader(r io.Reader) (*Reader, error) {
	sum := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(r, sum), 256<<10)
	var magic [len(fileMagic)]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	if string(magic[:]) != fileMagic {
		return nil, fmt.Errorf("%w: not a ringkv backup file (header %q)", ErrCorrupt, magic[:])
	}
	return &Reader{r: br, sum: sum, bytes: int64(len(fileMagic))}, nil
}

// Next returns the next record; io.EOF after the last. The key and the
// record's value are the caller's. Errors: ErrCorrupt (wrapped, with the
// record's offset) for a bad frame; the reader's own error otherwise.
func (r *Reader) Next() ([]byte, replica.Record, error) {
	at := r.bytes
	n, err := r.readLength(at)
	switch {
	case err != nil:
		return nil, replica.Record{}, err
	case n > MaxFrameBytes || n == 0:
		return nil, replica.Record{}, fmt.Errorf("%w: frame length %d at offset %d", ErrCorrupt, n, at)
	}
	if cap(r.buf) < int(n)+4 {
		r.buf = make([]byte, int(n)+4)
	}
	frame := r.buf[:int(n)+4]
	if _, err := io.ReadFull(r.r, frame); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, replica.Record{}, fmt.Errorf("%w: truncated frame at offset %d", ErrCorrupt, at)
		}
		return nil, replica.Record{}, fmt.Errorf("read frame at offset %d: %w", at, err)
	}
	r.bytes += int64(varint.Len(n)) + int64(len(frame))
	body := frame[:n]
	if got, want := crc.Sum(body), binary.BigEndian.Uint32(frame[n:]); got != want {
		return nil, replica.Record{}, fmt.Errorf("%w: frame checksum %08x, want %08x, at offset %d", ErrCorrupt, got, want, at)
	}
	klen, k := varint.Uvarint(body)
	if k <= 0 || klen > uint64(len(body)-k) {
		return nil, replica.Record{}, fmt.Errorf("%w: bad key length at offset %d", ErrCorrupt, at)
	}
	key := append([]byte(nil), body[k:k+int(klen)]...)
	rec, err := replica.DecodeRecord(body[k+int(klen):])
	if err != nil {
		return nil, replica.Record{}, fmt.Errorf("%w: record at offset %d: %w", ErrCorrupt, at, err)
	}
	if r.records > 0 && string(key) <= string(r.lastKey) {
		return nil, replica.Record{}, fmt.Errorf("%w: key out of order at offset %d", ErrCorrupt, at)
	}
	r.lastKey = append(r.lastKey[:0], key...)
	r.records++
	return key, rec, nil
}

// readLength reads a frame's uvarint length: io.EOF at a clean end of
// the file, ErrCorrupt (wrapped) for a truncated or overlong varint.
func (r *Reader) readLength(at int64) (uint64, error) {
	var x uint64
	for i := 0; ; i++ {
		b, err := r.r.ReadByte()
		switch {
		case errors.Is(err, io.EOF) && i == 0:
			return 0, io.EOF
		case errors.Is(err, io.EOF):
			return 0, fmt.Errorf("%w: truncated frame at offset %d", ErrCorrupt, at)
		case err != nil:
			return 0, fmt.Errorf("read at offset %d: %w", at, err)
		case i == binary.MaxVarintLen64-1 && b > 1:
			return 0, fmt.Errorf("%w: bad frame length at offset %d", ErrCorrupt, at)
		}
		x |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return x, nil
		}
	}
}

// Records returns the records read so far.
func (r *Reader) Records() int64 { return r.records }

// Bytes returns the bytes read so far.
func (r *Reader) Bytes() int64 { return r.bytes }

// SHA256 returns the hex SHA-256 of the bytes read so far; after Next
// returned io.EOF, of the whole file.
func (r *Reader) SHA256() string { return hex.EncodeToString(r.sum.Sum(nil)) }
