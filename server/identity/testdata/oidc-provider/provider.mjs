// A real third-party OpenID provider (npm oidc-provider) for the identity
// package's end-to-end test. The Go test starts it as
//
//	node provider.mjs <port>
//
// on 127.0.0.1, waits for discovery, and then gets tokens over HTTP:
// client_credentials for an RFC 9068 JWT access token (typ at+jwt, ES256),
// and the authorization code flow, with login and consent granted
// automatically, for an access token plus an ID token of one user (RS256).
// Keys are made fresh at every start; nothing is stored.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node provider.mjs <port>');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const audience = 'api://tierguard-e2e';
const accountId = 'user-0001';

function signingKey(type, options, alg, kid) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid };
}

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'tierguard-e2e',
    client_secret: 'e2e-secret-not-a-real-one',
    grant_types: ['authorization_code', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    application_type: 'native',
    token_endpoint_auth_method: 'client_secret_post',
  }],
  jwks: {
    keys: [
      signingKey('rsa', { modulusLength: 2048 }, 'RS256', 'e2e-rsa'),
      signingKey('ec', { namedCurve: 'P-256' }, 'ES256', 'e2e-ec'),
    ],
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  conformIdTokenClaims: false,
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, name: 'E2E User', email: 'e2e@example.test', email_verified: true };
      },
    };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api:read',
        audience,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});

// Log in and consent at once: the test is about the tokens, not the pages.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope('openid profile email');
  grant.addResourceScope(audience, 'api:read');
  const grantId = await grant.save();
  const result = { login: { accountId }, consent: { grantId } };
  ctx.respond = false;
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening at ${issuer}`);
});
