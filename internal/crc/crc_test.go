package crc

import "testing"

func TestSum(t *testing.T) {
	// The check value of CRC-32C (RFC 3720, B.4).
	if got := Sum([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("Sum = %#x, want 0xe3069283", got)
	}
	if Sum(nil) != 0 {
		t.Fatal("Sum(nil) != 0")
	}
}
