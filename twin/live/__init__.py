"""The live twin: changes to records as events in the store, the state as of any date, and the delta index.

>>> from twin.live import LiveTwin, PersonDies                                   # doctest: +SKIP
>>> live = LiveTwin(twin.load())
>>> live.apply([PersonDies(person_id=7, effective_date="2026-12-01", author="李敏", reason="certificate")])
>>> live.persons_on("2026-12-01"), live.events_between("2026-12-01", "2026-12-31"), live.twin_on()
"""

from twin.live.changes import (
    CHANGE_KINDS,
    BuildingAdded,
    BuildingChanged,
    BuildingDemolished,
    BusinessCloses,
    BusinessCreditChanged,
    BusinessMoves,
    BusinessOpens,
    Change,
    DwellingAdded,
    DwellingRemoved,
    HouseholdForms,
    HouseholdSplits,
    PersonBorn,
    PersonDies,
    PersonFlagChanged,
    PersonMoves,
    PersonMovesIn,
    PersonMovesOut,
    change_from_dict,
    change_to_dict,
)
from twin.live.events import CommitResult, EventRow, read_events
from twin.live.state import EVENT_COLUMNS, LiveTwin

__all__ = [
    "LiveTwin", "CommitResult", "EventRow", "read_events", "EVENT_COLUMNS", "Change", "CHANGE_KINDS",
    "change_from_dict", "change_to_dict", "PersonMovesIn", "PersonMoves", "PersonMovesOut", "PersonBorn",
    "PersonDies", "PersonFlagChanged", "HouseholdForms", "HouseholdSplits", "BusinessOpens", "BusinessCloses",
    "BusinessMoves", "BusinessCreditChanged", "BuildingAdded", "BuildingDemolished", "BuildingChanged",
    "DwellingAdded", "DwellingRemoved",
]
