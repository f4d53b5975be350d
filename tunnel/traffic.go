package tunnel

// Traffic implements app.Tunnel with the counters of Status: for WireGuard
// the bytes exchanged with the peer (handshakes and keepalives included, so a live peer
// answers anything within seconds), for a proxy the payload relayed to and from the
// container. It sends nothing; the reconciler uses it to check a host whose tunnel keeps
// sending without hearing back, before its periodic check is due.
func (m *Manager) Traffic(hostID string) (rx, tx uint64, ok bool) {
	st := m.Status(hostID)
	return st.RxBytes, st.TxBytes, st.Attached
}
