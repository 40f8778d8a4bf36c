package ring

import "errors"

var (
	// ErrMemberExists is returned by Ring.Join when the member is already Joined.
	ErrMemberExists = errors.New("ring: member exists")
	// ErrUnknownMember is returned by Ring.Leave when the member is not Joined, and
	// by Ring.Remove when it is absent or already Removed.
	ErrUnknownMember = errors.New("ring: unknown member")
	// ErrInvalid marks every error returned by Decode, Config.Validate and the
	// argument checks of Join: the input does not describe a valid ring.
	ErrInvalid = errors.New("ring: invalid")
)
