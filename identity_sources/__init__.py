"""Identity sources: where people come from and how they sign in (OpenID Connect SSO, SCIM provisioning).

Sits between portal and jit in the layer contract: it calls governance services, portal may import it.
"""
