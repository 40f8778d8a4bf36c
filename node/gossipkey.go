package node

// ReloadGossipKeyring reads the gossip keyring file (Config.GossipKeyringFile)
// again and applies it without a restart: every key in it is accepted, the
// first one encrypts, keys no longer listed are dropped. The binary calls it
// on SIGHUP; the rotation procedure is in package gossip's documentation.
//
// It returns gossip.ErrNoKeyring when the node was opened without a keyring
// file, an error marked gossip.ErrInvalidConfig when the file cannot be read
// or parsed (the running keyring is then unchanged), and gossip.ErrClosed
// once the node is closing. Safe for concurrent use.
func (n *Node) ReloadGossipKeyring() error { return n.gossip.ReloadKeyring() }
