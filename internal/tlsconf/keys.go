package tlsconf

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ErrKeyPassword means ssl.key_password does not decrypt ssl.key.
var ErrKeyPassword = errors.New("wrong ssl.key_password for the encrypted key")

// maxPBKDF2Iterations bounds the work a key file can ask for (OpenSSL uses 2048).
var maxPBKDF2Iterations = 10_000_000

// DecryptKeyPEM returns the first private key in keyPEM as unencrypted PEM. It decrypts the two forms
// OpenSSL writes: legacy PEM encryption ("Proc-Type: 4,ENCRYPTED", from `openssl rsa -aes256` or
// `-traditional`) and PKCS#8 "ENCRYPTED PRIVATE KEY" with PBES2 (PBKDF2 with HMAC-SHA1/224/256/384/512 and
// AES-128/192/256-CBC or 3DES-CBC: what `openssl genpkey -aes256` and `openssl pkcs8 -topk8` produce).
// Other schemes (scrypt, PKCS#12 PBE, PBES1) get an error saying how to convert the key. An unencrypted
// key is returned unchanged whatever the password.
func DecryptKeyPEM(keyPEM []byte, password string) ([]byte, error) {
	rest := keyPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key found (expected a block such as \"-----BEGIN PRIVATE KEY-----\")")
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		switch {
		case block.Type == "ENCRYPTED PRIVATE KEY":
			if password == "" {
				return nil, errors.New("the key is encrypted (ENCRYPTED PRIVATE KEY); set ssl.key_password")
			}
			der, err := decryptPKCS8(block.Bytes, password)
			if err != nil {
				return nil, err
			}
			return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
		//lint:ignore SA1019 trojan-gfw keys with ssl.key_password are legacy PEM encryption (see above)
		case x509.IsEncryptedPEMBlock(block):
			if password == "" {
				return nil, errors.New("the key is encrypted (Proc-Type: 4,ENCRYPTED); set ssl.key_password")
			}
			//lint:ignore SA1019 legacy PEM encryption, see above
			der, err := x509.DecryptPEMBlock(block, []byte(password))
			if errors.Is(err, x509.IncorrectPasswordError) {
				return nil, ErrKeyPassword
			}
			if err != nil {
				return nil, fmt.Errorf("decrypt legacy PEM key: %w", err)
			}
			if !parsesAsKey(block.Type, der) {
				return nil, ErrKeyPassword
			}
			return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der}), nil
		default:
			return pem.EncodeToMemory(block), nil
		}
	}
}

func parsesAsKey(pemType string, der []byte) bool {
	switch pemType {
	case "RSA PRIVATE KEY":
		_, err := x509.ParsePKCS1PrivateKey(der)
		return err == nil
	case "EC PRIVATE KEY":
		_, err := x509.ParseECPrivateKey(der)
		return err == nil
	default:
		_, err := x509.ParsePKCS8PrivateKey(der)
		return err == nil
	}
}

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
)

// RFC 8018 structures.
type encryptedPrivateKeyInfo struct {
	Algo          algorithmIdentifier
	EncryptedData []byte
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type pbes2Params struct {
	KeyDerivationFunc algorithmIdentifier
	EncryptionScheme  algorithmIdentifier
}

type pbkdf2Params struct {
	Salt           []byte
	IterationCount int
	KeyLength      int                 `asn1:"optional"`
	PRF            algorithmIdentifier `asn1:"optional"`
}

const convertHint = "convert the key with `openssl pkey -in KEY -out KEY.plain` (unencrypted) or " +
	"`openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -in KEY.plain -out KEY.new`"

func decryptPKCS8(der []byte, password string) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("malformed ENCRYPTED PRIVATE KEY: %v", err)
	}
	if !info.Algo.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("encryption scheme %v is not supported (only PBES2); %s", info.Algo.Algorithm, convertHint)
	}
	var params pbes2Params
	if _, err := asn1.Unmarshal(info.Algo.Parameters.FullBytes, &params); err != nil {
		return nil, fmt.Errorf("malformed PBES2 parameters: %v", err)
	}
	kdf := params.KeyDerivationFunc
	if kdf.Algorithm.Equal(oidScrypt) {
		return nil, fmt.Errorf("scrypt-encrypted keys are not supported; %s", convertHint)
	}
	if !kdf.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("key derivation %v is not supported (only PBKDF2); %s", kdf.Algorithm, convertHint)
	}
	var kp pbkdf2Params
	if _, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &kp); err != nil {
		return nil, fmt.Errorf("malformed PBKDF2 parameters: %v", err)
	}
	if kp.IterationCount < 1 || kp.IterationCount > maxPBKDF2Iterations {
		return nil, fmt.Errorf("PBKDF2 iteration count %d out of range 1..%d", kp.IterationCount, maxPBKDF2Iterations)
	}

	enc := params.EncryptionScheme
	var keyLen int
	var newBlock func([]byte) (cipher.Block, error)
	switch {
	case enc.Algorithm.Equal(oidAES128CBC):
		keyLen, newBlock = 16, aes.NewCipher
	case enc.Algorithm.Equal(oidAES192CBC):
		keyLen, newBlock = 24, aes.NewCipher
	case enc.Algorithm.Equal(oidAES256CBC):
		keyLen, newBlock = 32, aes.NewCipher
	case enc.Algorithm.Equal(oidDESEDE3CBC):
		keyLen, newBlock = 24, des.NewTripleDESCipher
	default:
		return nil, fmt.Errorf("cipher %v is not supported (AES-CBC or 3DES-CBC only); %s", enc.Algorithm, convertHint)
	}
	if kp.KeyLength != 0 && kp.KeyLength != keyLen {
		return nil, fmt.Errorf("PBKDF2 key length %d does not fit the cipher (%d)", kp.KeyLength, keyLen)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(enc.Parameters.FullBytes, &iv); err != nil {
		return nil, fmt.Errorf("malformed cipher IV: %v", err)
	}

	var key []byte
	var err error
	prf := kp.PRF.Algorithm
	switch {
	case len(prf) == 0 || prf.Equal(oidHMACSHA1):
		key, err = pbkdf2.Key(sha1.New, password, kp.Salt, kp.IterationCount, keyLen)
	case prf.Equal(oidHMACSHA224):
		key, err = pbkdf2.Key(sha256.New224, password, kp.Salt, kp.IterationCount, keyLen)
	case prf.Equal(oidHMACSHA256):
		key, err = pbkdf2.Key(sha256.New, password, kp.Salt, kp.IterationCount, keyLen)
	case prf.Equal(oidHMACSHA384):
		key, err = pbkdf2.Key(sha512.New384, password, kp.Salt, kp.IterationCount, keyLen)
	case prf.Equal(oidHMACSHA512):
		key, err = pbkdf2.Key(sha512.New, password, kp.Salt, kp.IterationCount, keyLen)
	default:
		return nil, fmt.Errorf("PBKDF2 PRF %v is not supported; %s", prf, convertHint)
	}
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	block, err := newBlock(key)
	if err != nil {
		return nil, fmt.Errorf("cipher: %w", err)
	}
	bs := block.BlockSize()
	data := info.EncryptedData
	if len(iv) != bs || len(data) == 0 || len(data)%bs != 0 {
		return nil, errors.New("malformed encrypted key: bad IV or data length")
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, data)
	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > bs {
		return nil, ErrKeyPassword
	}
	for _, b := range plain[len(plain)-pad:] {
		if int(b) != pad {
			return nil, ErrKeyPassword
		}
	}
	plain = plain[:len(plain)-pad]
	if _, err := x509.ParsePKCS8PrivateKey(plain); err != nil {
		return nil, ErrKeyPassword
	}
	return plain, nil
}
