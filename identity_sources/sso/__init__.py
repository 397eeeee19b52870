"""Single sign-on with OpenID Connect, on mozilla-django-oidc.

The library runs the authorization code flow (PKCE, state, nonce); this package adds what it leaves
open: endpoints from the issuer's discovery document, the ID token's issuer, audience and expiry
checked, the login found by `(issuer, sub)` and never by the e-mail alone, roles from a group claim,
sign-out at the provider, and passwords an admin can switch off.
"""
