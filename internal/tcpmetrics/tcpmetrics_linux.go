package tcpmetrics

import (
	"fmt"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// Dump returns every entry of the calling thread's network namespace's TCP metrics cache.
func Dump() ([]Entry, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("tcp_metrics: generic netlink: %w", err)
	}
	defer c.Close()
	fam, err := c.GetFamily(familyName)
	if err != nil {
		return nil, fmt.Errorf("tcp_metrics: family: %w", err)
	}
	if fam.Version < familyMinVersion {
		return nil, fmt.Errorf("tcp_metrics: family version %d", fam.Version)
	}
	msgs, err := c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmdGet, Version: fam.Version},
	}, fam.ID, netlink.Request|netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("tcp_metrics: dump: %w", err)
	}
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		e, err := parseMessage(m.Data)
		if err != nil {
			return nil, fmt.Errorf("tcp_metrics: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}

// parseMessage decodes the attributes of one generic netlink message body.
func parseMessage(b []byte) (Entry, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var attrs []attr
	for ad.Next() {
		attrs = append(attrs, attr{typ: ad.Type(), data: ad.Bytes()})
	}
	if err := ad.Err(); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return decodeEntry(attrs)
}
