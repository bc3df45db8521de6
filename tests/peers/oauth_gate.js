// nginx (njs) in front of Orthanc for tests/clouds.rs: admits a request only if
// its bearer token is active, as the OAuth 2.0 server's introspection endpoint
// (RFC 7662) says. The harness fills in INTROSPECTION and GATEWAY_BASIC.
const INTROSPECTION = '@INTROSPECTION@';
const GATEWAY_BASIC = '@GATEWAY_BASIC@';

async function introspect(r) {
  const auth = r.headersIn['Authorization'] || '';
  if (!auth.startsWith('Bearer ')) {
    r.return(401);
    return;
  }
  try {
    const reply = await ngx.fetch(INTROSPECTION, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        Authorization: 'Basic ' + GATEWAY_BASIC,
      },
      body: 'token=' + encodeURIComponent(auth.slice(7)),
    });
    const answer = await reply.json();
    r.return(answer.active ? 204 : 401);
  } catch (e) {
    r.error('introspection failed: ' + e);
    r.return(500);
  }
}

export default { introspect };
