"""Identity: keys, X.509 certificates, the CA hierarchy, signing and verification.

The ministry's root CA signs one CA per organisation (path length 0); organisation CAs sign
end-entity certificates for nodes, staff (doctor, nurse, admin) and patients, with org and
role in the subject. Signing keys are ECDSA P-256; encryption keys are ECDH P-256 so that
browsers can use them through WebCrypto. Everything is built on the ``cryptography`` package.

Modules: ``keys`` (SigningKey, VerifyingKey, EncryptionKey), ``certs`` (issuing the
hierarchy, DER/PEM), ``validate`` (TrustStore, Identity, Purpose, verify_signed: pure, time is
an argument) and ``keystore`` (key and certificate files; the only module that does I/O).

Imports: protocol only (plus the standard library and ``cryptography``).
"""
