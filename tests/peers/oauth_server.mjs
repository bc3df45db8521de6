// A real OAuth 2.0 authorization server for tests/clouds.rs: oidc-provider (npm,
// OpenID Certified), with the client credentials grant and token introspection.
//
//     node oauth_server.mjs CONFIG.json
//
// CONFIG: {"port": N, "ttl": SECONDS, "clients": [{"client_id", "client_secret",
// "token_endpoint_auth_method"}], "gateway": {"client_id", "client_secret"}}
// The gateway client may introspect every token; the others get tokens of TTL
// seconds for scope "dicom". Each token issued is logged as one line on stdout.
import fs from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const issued = (client) => ({
  client_id: client.client_id,
  client_secret: client.client_secret,
  token_endpoint_auth_method: client.token_endpoint_auth_method || 'client_secret_basic',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope: 'dicom',
});
const provider = new Provider(`http://127.0.0.1:${config.port}`, {
  clients: [...config.clients.map(issued), { ...issued(config.gateway), grant_types: [] }],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async () => true },
  },
  scopes: ['dicom'],
  ttl: { ClientCredentials: config.ttl },
});
provider.on('client_credentials.saved', (token) => {
  console.log(`issued ${token.clientId} ${token.expiresIn}`);
});
provider.on('server_error', (ctx, error) => console.error(error));
provider.listen(config.port, '127.0.0.1', () => console.log('listening'));
