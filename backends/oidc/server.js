// A real OpenID Connect provider for Portcullis's tests: oidc-provider
// (certified by the OpenID Foundation) on 127.0.0.1:$OIDC_PORT, with a
// confidential client for sign-ins (`portcullis`), a service client that
// gets JWT access tokens for Portcullis by client credentials (`gateway`,
// in group `gateways`), and two users. Sign-in and consent use
// oidc-provider's own development interactions: the login form takes a user
// name from the table below; users not in it are refused. Nothing here is
// fit for production.
//
//   OIDC_PORT=9400 OIDC_REDIRECT_URIS=http://127.0.0.1:8180/auth/oauth/op/callback node server.js
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT || 9400);
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (process.env.OIDC_REDIRECT_URIS || '')
  .split(',')
  .filter(Boolean);
if (redirectUris.length === 0) {
  console.error('OIDC_REDIRECT_URIS is required (comma-separated)');
  process.exit(64);
}

const users = {
  erin: {
    sub: 'erin',
    preferred_username: 'erin',
    name: 'Erin Example',
    email: 'erin@portcullis.test',
    email_verified: true,
    groups: ['engineering'],
  },
  frank: {
    sub: 'frank',
    preferred_username: 'frank',
    name: 'Frank Field',
    email: 'frank@portcullis.test',
    email_verified: true,
    groups: ['sales'],
  },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'portcullis',
      client_secret: 'portcullis-test-secret',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'gateway',
      client_secret: 'gateway-test-secret',
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // Every authorization must carry a PKCE challenge.
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  async findAccount(ctx, id) {
    const claims = users[id];
    if (!claims) return undefined;
    return { accountId: id, claims: async () => claims };
  },
  cookies: { keys: ['portcullis-test-oidc-cookie-key'] },
  // Service tokens carry the client's groups.
  extraTokenClaims(ctx, token) {
    if (token.kind === 'ClientCredentials' && token.clientId === 'gateway') {
      return { groups: ['gateways'] };
    }
    return undefined;
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    // The gateway's tokens are for Portcullis (audience `portcullis`),
    // signed RS256 JWTs; sign-ins keep their opaque userinfo tokens.
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) =>
        client && client.clientId === 'gateway' ? 'urn:portcullis' : oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        audience: 'portcullis',
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
