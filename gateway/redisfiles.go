package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/phigate/phigate/config"
	"github.com/redis/go-redis/v9"
)

// redisFiles applies redis.password_file and redis.ca_file to the options
// parsed from redis.url, so that secrets can come from files (container
// secrets) rather than the URL.
func redisFiles(opt *redis.Options, c config.Redis) error {
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return fmt.Errorf("redis.password_file: %w", err)
		}
		opt.Password = string(bytes.TrimRight(b, "\r\n"))
	}
	if c.CAFile != "" {
		if opt.TLSConfig == nil {
			return errors.New("redis.ca_file is set but redis.url is not rediss://")
		}
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("redis.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("redis.ca_file %s: no certificates found", c.CAFile)
		}
		opt.TLSConfig.RootCAs = pool
		opt.TLSConfig.MinVersion = max(opt.TLSConfig.MinVersion, tls.VersionTLS12)
	}
	return nil
}
