// SPC-2 RESERVE(6)/(10) and RELEASE(6)/(10) (SPC-2 r20 §7.16, §7.17, §7.21, §7.22): logical unit
// reservations only (third-party and extent reservations are not supported: their CDB bits are
// 0 in the usage data, so the core rejects them), and their interplay with persistent
// reservations (SPC-4 r37 §5.9.3, REPORT CAPABILITIES CRH=1).
//
// While any registration exists, SPC-4 §5.9.3 applies: RESERVE and RELEASE complete with GOOD and
// change nothing when they come from a persistent reservation holder, or from a registered I_T
// nexus while a registrants only or all registrants reservation exists; otherwise they conflict
// (SPC-2 r20 §5.5.1: all of them conflict while registrations exist). With no registration they
// act as SPC-2 says. The two kinds cannot coexist: PERSISTENT RESERVE OUT conflicts while an SPC-2
// reservation exists (the reservation gate).
import type { Task } from './command';
import type { Core } from './command-def';
import { ScsiStatus } from './constants';
import { isAllRegistrants, isRegistrantsOnly, type PersistentReservations } from './persistent-reservations';

export function parseReserveRelease(task: Task): void {
  task.dataLength = 0; // no parameter list (LONGID and third-party are not supported)
}

/** §5.9.3 a) and b): GOOD without effect for these I_T nexuses. */
function exempt(pr: PersistentReservations, task: Task): boolean {
  const reg = pr.registrationOf(task.nexus!);
  if (reg === null) return false;
  const d = pr.data;
  return d.holds(reg) || isRegistrantsOnly(d.type) || isAllRegistrants(d.type);
}

function conflict(task: Task): number {
  task.goodStatus = ScsiStatus.RESERVATION_CONFLICT;
  return 0;
}

/** RESERVE(6) / RESERVE(10): reserve the logical unit for this I_T nexus (again, if it holds it). */
export function executeReserve(_core: Core, task: Task): number {
  const pr = task.lu!.pr;
  if (pr.data.registrations.length > 0) return exempt(pr, task) ? 0 : conflict(task);
  if (pr.spc2Holder !== null && pr.spc2Holder !== task.nexus) return conflict(task);
  pr.setSpc2Holder(task.nexus);
  return 0;
}

/** RELEASE(6) / RELEASE(10): the holder's reservation ends; from anyone else GOOD, nothing released. */
export function executeRelease(_core: Core, task: Task): number {
  const pr = task.lu!.pr;
  if (pr.data.registrations.length > 0) return exempt(pr, task) ? 0 : conflict(task);
  if (pr.spc2Holder === task.nexus) pr.setSpc2Holder(null);
  return 0;
}
