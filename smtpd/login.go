package smtpd

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// loginServer is the server side of the obsolete but ubiquitous LOGIN SASL
// mechanism (draft-murchison-sasl-login), which Outlook and many devices
// still use; go-sasl ships only the client side.
type loginServer struct {
	auth     func(username, password string) error
	state    int
	username string
}

func newLoginServer(auth func(username, password string) error) sasl.Server {
	return &loginServer{auth: auth}
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case 0:
		s.state = 1
		if len(response) == 0 {
			return []byte("Username:"), false, nil
		}
		// An initial response carries the user name (RFC 4954 4).
		fallthrough
	case 1:
		s.username = string(response)
		s.state = 2
		return []byte("Password:"), false, nil
	case 2:
		s.state = 3
		return nil, true, s.auth(s.username, string(response))
	}
	return nil, false, errors.New("unexpected client response")
}
