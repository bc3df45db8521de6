// Google's OAuth 2.0 token endpoint as tests/clouds.rs needs it, where Google cannot
// be reached: the JWT bearer grant (RFC 7523) of a service account, checked as
// Google checks it (RS256 signature by the account's key, issuer, audience, an
// expiry at most an hour on, a scope), and an introspection endpoint (RFC 7662)
// for the gateway in front of Orthanc. Node's own crypto does the checking.
//
//     node google_token_server.mjs CONFIG.json
//
// CONFIG: {"port", "ttl", "client_email", "public_key" (PEM)}. Each token issued
// is logged as "issued google TTL".
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const audience = `http://127.0.0.1:${config.port}/token`;
const issued = new Map();

function reply(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

function grant(form) {
  if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
    return [400, { error: 'unsupported_grant_type' }];
  }
  const [header, claims, signature] = (form.get('assertion') || '').split('.');
  if (!signature) return [400, { error: 'invalid_grant', error_description: 'not a JWT' }];
  const signed = crypto.verify('RSA-SHA256', Buffer.from(`${header}.${claims}`),
    config.public_key, Buffer.from(signature, 'base64url'));
  const alg = JSON.parse(Buffer.from(header, 'base64url')).alg;
  const c = JSON.parse(Buffer.from(claims, 'base64url'));
  const now = Date.now() / 1000;
  const wrong = !signed ? 'bad signature'
    : alg !== 'RS256' ? 'not RS256'
    : c.iss !== config.client_email ? 'wrong issuer'
    : c.aud !== audience ? 'wrong audience'
    : !(c.exp > now && c.exp - c.iat <= 3600) ? 'bad expiry'
    : !c.scope ? 'no scope' : null;
  if (wrong) return [400, { error: 'invalid_grant', error_description: wrong }];
  const token = crypto.randomBytes(24).toString('hex');
  issued.set(token, now + config.ttl);
  console.log(`issued google ${config.ttl}`);
  return [200, { access_token: token, expires_in: config.ttl, token_type: 'Bearer' }];
}

http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    const form = new URLSearchParams(body);
    if (req.method === 'POST' && req.url === '/token') return reply(res, ...grant(form));
    if (req.method === 'POST' && req.url === '/token/introspection') {
      const expires = issued.get(form.get('token'));
      return reply(res, 200, { active: !!expires && expires > Date.now() / 1000 });
    }
    reply(res, 404, { error: 'not_found' });
  });
}).listen(config.port, '127.0.0.1');
