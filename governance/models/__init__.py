from .entitlements import Entitlement, SodRule
from .findings import Finding
from .grants import Grant
from .identities import Identity
from .notifications import Notification
from .systems import System

__all__ = ["Entitlement", "Finding", "Grant", "Identity", "Notification", "SodRule", "System"]
