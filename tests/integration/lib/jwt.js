'use strict';
/*
 * jwt.js - mints JSON Web Tokens for the auth tests with node's own
 * crypto (no npm dependency): HS256/384/512 with a shared secret, RS256
 * and ES256 with a private key, and deliberately broken tokens ("alg":
 * "none", tampered payloads or signatures) that a correct server refuses.
 *
 * Tokens are compact JWS (RFC 7515): base64url(header) "."
 * base64url(payload) "." base64url(signature). ES256 signatures are the
 * raw 64-byte r||s form JWS requires (dsaEncoding "ieee-p1363"), not DER.
 */
const crypto = require('node:crypto');

const HMAC = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };

function b64url(data) {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(String(data), 'utf8');
    return buf.toString('base64url');
}

/* base64url of the JSON text of obj. */
function encodeJson(obj) {
    return b64url(JSON.stringify(obj));
}

/* The signature of signingInput (a string) for alg with key: a secret
 * (string or Buffer) for HS*, a private KeyObject or PEM for RS256/ES256. */
function signature(alg, key, signingInput) {
    if (HMAC[alg]) {
        return crypto.createHmac(HMAC[alg], key).update(signingInput).digest();
    }
    if (alg === 'RS256') {
        return crypto.sign('sha256', Buffer.from(signingInput), key);
    }
    if (alg === 'ES256') {
        return crypto.sign('sha256', Buffer.from(signingInput),
            { key, dsaEncoding: 'ieee-p1363' });
    }
    throw new Error(`jwt.js: unsupported algorithm ${alg}`);
}

/*
 * Mints a signed JWT. payload is the claims object (used as given: no
 * claim is added). opts.header: extra or overriding header fields, e.g.
 * {alg: 'hs256'} to name another algorithm than the one signed with.
 * Returns the compact token.
 */
function signJwt(alg, key, payload, opts = {}) {
    const header = { alg, typ: 'JWT', ...(opts.header || {}) };
    const input = `${encodeJson(header)}.${encodeJson(payload)}`;
    return `${input}.${b64url(signature(alg, key, input))}`;
}

/* An unsigned token: header {"alg":"none"} and an empty signature. */
function unsignedJwt(payload) {
    return `${encodeJson({ alg: 'none', typ: 'JWT' })}.${encodeJson(payload)}.`;
}

/* The token with its payload replaced by newPayload, signature kept. */
function withPayload(token, newPayload) {
    const [h, , s] = token.split('.');
    return `${h}.${encodeJson(newPayload)}.${s}`;
}

/*
 * The token with one byte of its signature changed. The first character
 * is changed, not the last: the last base64url character of a signature
 * carries padding bits a decoder may ignore, so changing it might not
 * change the decoded signature at all.
 */
function withBadSignature(token) {
    const [h, p, s] = token.split('.');
    const first = s[0] === 'A' ? 'B' : 'A';
    return `${h}.${p}.${first}${s.slice(1)}`;
}

/* The three segments of a token, decoded: {header, payload, signature}. */
function decodeJwt(token) {
    const [h, p, s] = token.split('.');
    return {
        header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
        payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
        signature: s,
    };
}

/* Now as a JWT NumericDate (whole seconds since the epoch). */
function nowSeconds() {
    return Math.floor(Date.now() / 1000);
}

/* A fresh RSA (2048 bit) or EC P-256 key pair; the public key as PEM. */
function rsaKeyPair() {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }) };
}

function ecKeyPair() {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }) };
}

module.exports = {
    b64url,
    decodeJwt,
    ecKeyPair,
    encodeJson,
    nowSeconds,
    rsaKeyPair,
    signJwt,
    unsignedJwt,
    withBadSignature,
    withPayload,
};
