package tlsconf

// opensslPBES2Sample is a throwaway P-256 key written by `openssl genpkey -aes256 -pass pass:pw`.
const opensslPBES2Sample = `-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjJYJvLxXE9qQICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEJ/ux7euJLnXzX8DL6arPrEEgZDC
oTW1NoSC+Bo5rGaWZn7khLA7i40y7GyPXjPqWJHVxJ9FoftfdU7rXYQM1isll3Yu
pzFz8BocIxh+PNKqF1k0J5f7N3g9CAjAZNkqcr6a6rUA9gJQUipd4OQjTckNQHPZ
dxd1wzxYOV33SUQPz7bgzhAyaWJRivBj7G30kzU/av1mJlQlHn6N8wIV1zNUMBQ=
-----END ENCRYPTED PRIVATE KEY-----
`
