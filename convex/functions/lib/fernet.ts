// Opening a Fernet token (https://github.com/fernet/spec) with WebCrypto, for the bot tokens of
// OAuth-installed Slack workspaces, which the bot seals with CHATBOT_TOKEN_KEY (core/installations.py,
// Python's `cryptography` Fernet). Only opening: Convex never seals a token.
//
// key   = base64url(signing key 16 bytes | encryption key 16 bytes)
// token = base64url(0x80 | timestamp 8 bytes | IV 16 bytes | AES-128-CBC ciphertext, PKCS7 | HMAC-SHA256 32 bytes)
// with the HMAC over everything before it, keyed by the signing key.

function fromBase64Url(text: string): Uint8Array<ArrayBuffer> {
  const b64 = text.trim().replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The plain text sealed in `token`, or null when the key does not open it (wrong key, altered, malformed). */
export async function openFernet(key: string, token: string): Promise<string | null> {
  let keyBytes: Uint8Array<ArrayBuffer>;
  let data: Uint8Array<ArrayBuffer>;
  try {
    keyBytes = fromBase64Url(key);
    data = fromBase64Url(token);
  } catch {
    return null; // not base64
  }
  // version, timestamp, IV, at least one cipher block, HMAC
  if (keyBytes.length !== 32 || data.length < 1 + 8 + 16 + 16 + 32 || data[0] !== 0x80) return null;
  if ((data.length - (1 + 8 + 16 + 32)) % 16 !== 0) return null;
  const signed = data.slice(0, data.length - 32);
  const mac = data.slice(data.length - 32);
  const signingKey = await crypto.subtle.importKey("raw", keyBytes.slice(0, 16), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  // crypto.subtle.verify compares in constant time; nothing is decrypted before the HMAC holds.
  if (!(await crypto.subtle.verify("HMAC", signingKey, mac, signed))) return null;
  const encryptionKey = await crypto.subtle.importKey("raw", keyBytes.slice(16), { name: "AES-CBC" }, false, ["decrypt"]);
  try {
    // AES-CBC in WebCrypto removes (and checks) the PKCS7 padding.
    const plain = await crypto.subtle.decrypt({ name: "AES-CBC", iv: data.slice(9, 25) }, encryptionKey, data.slice(25, data.length - 32));
    return new TextDecoder("utf-8", { fatal: true }).decode(plain);
  } catch {
    return null;
  }
}
