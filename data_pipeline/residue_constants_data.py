"""Tabulated amino-acid facts behind ``data_pipeline.residue_constants``.

Everything here is plain data (strings, numbers) in a compact layout that is easy to
read and diff; ``residue_constants`` parses it once at import time into the tables
AlphaFold 2's code expects. Sources of the numbers:

* ideal residue geometry: AlphaFold 2's idealised side-chain coordinates, expressed in
  the local frame of the rigid group each atom moves with (rigid groups: Suppl. Table 2);
* bond lengths and bond angles with standard deviations: Engh & Huber (2001),
  International Tables for Crystallography Vol. F, ch. 18.3, as used by AF2's
  structural-violation losses (Suppl. 1.9.11);
* van der Waals radii: Bondi (1964).

No code lives here; do not import anything from this file except through
``data_pipeline.residue_constants``.
"""

# The 20 standard amino acids in AF2's index order (alphabetical by 3-letter code).
RESTYPES_1 = "ARNDCQEGHILKMFPSTWYV"
RESTYPES_3 = (
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL"
)

# The 37 heavy-atom slots of the atom37 layout, in AF2's order.
ATOM37_NAMES = (
    "N CA C CB O CG CG1 CG2 OG OG1 SG CD CD1 CD2 ND1 ND2 OD1 OD2 SD CE CE1 CE2 CE3 "
    "NE NE1 NE2 OE1 OE2 CH2 NH1 NH2 OH CZ CZ2 CZ3 NZ OXT"
)

# HHblits' 22-letter MSA alphabet (20 amino acids alphabetically by 1-letter code,
# then "X" and the gap "-"), and the rare letters HHblits folds into it.
HHBLITS_ALPHABET = "ACDEFGHIKLMNPQRSTVWYX-"
HHBLITS_ALIASES = {"B": "D", "J": "X", "O": "X", "U": "C", "Z": "E"}

# Chain identifiers a PDB file can hold, in the order they are handed out.
PDB_CHAIN_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

# Heavy atoms of each residue, in the order AF2 lists them (PDB names).
RESIDUE_ATOMS = {
    "ALA": "C CA CB N O",
    "ARG": "C CA CB CG CD CZ N NE O NH1 NH2",
    "ASP": "C CA CB CG N O OD1 OD2",
    "ASN": "C CA CB CG N ND2 O OD1",
    "CYS": "C CA CB N O SG",
    "GLU": "C CA CB CG CD N O OE1 OE2",
    "GLN": "C CA CB CG CD N NE2 O OE1",
    "GLY": "C CA N O",
    "HIS": "C CA CB CG CD2 CE1 N ND1 NE2 O",
    "ILE": "C CA CB CG1 CG2 CD1 N O",
    "LEU": "C CA CB CG CD1 CD2 N O",
    "LYS": "C CA CB CG CD CE N NZ O",
    "MET": "C CA CB CG CE N O SD",
    "PHE": "C CA CB CG CD1 CD2 CE1 CE2 CZ N O",
    "PRO": "C CA CB CG CD N O",
    "SER": "C CA CB N O OG",
    "THR": "C CA CB CG2 N O OG1",
    "TRP": "C CA CB CG CD1 CD2 CE2 CE3 CZ2 CZ3 CH2 N NE1 O",
    "TYR": "C CA CB CG CD1 CD2 CE1 CE2 CZ N O OH",
    "VAL": "C CA CB CG1 CG2 N O",
}

# The atom14 layout: the heavy atoms of each residue in a fixed order, padded to 14.
ATOM14_NAMES = {
    "ALA": "N CA C O CB",
    "ARG": "N CA C O CB CG CD NE CZ NH1 NH2",
    "ASN": "N CA C O CB CG OD1 ND2",
    "ASP": "N CA C O CB CG OD1 OD2",
    "CYS": "N CA C O CB SG",
    "GLN": "N CA C O CB CG CD OE1 NE2",
    "GLU": "N CA C O CB CG CD OE1 OE2",
    "GLY": "N CA C O",
    "HIS": "N CA C O CB CG ND1 CD2 CE1 NE2",
    "ILE": "N CA C O CB CG1 CG2 CD1",
    "LEU": "N CA C O CB CG CD1 CD2",
    "LYS": "N CA C O CB CG CD CE NZ",
    "MET": "N CA C O CB CG SD CE",
    "PHE": "N CA C O CB CG CD1 CD2 CE1 CE2 CZ",
    "PRO": "N CA C O CB CG CD",
    "SER": "N CA C O CB OG",
    "THR": "N CA C O CB OG1 CG2",
    "TRP": "N CA C O CB CG CD1 CD2 NE1 CE2 CE3 CZ2 CZ3 CH2",
    "TYR": "N CA C O CB CG CD1 CD2 CE1 CE2 CZ OH",
    "VAL": "N CA C O CB CG1 CG2",
    "UNK": "",
}

# Atoms defining chi1..chi4 of each residue, one quadruple per chi, separated by "/".
# ARG's chi5 is left out: it stays near 0 degrees.
CHI_ATOMS = {
    "ALA": "",
    "ARG": "N CA CB CG / CA CB CG CD / CB CG CD NE / CG CD NE CZ",
    "ASN": "N CA CB CG / CA CB CG OD1",
    "ASP": "N CA CB CG / CA CB CG OD1",
    "CYS": "N CA CB SG",
    "GLN": "N CA CB CG / CA CB CG CD / CB CG CD OE1",
    "GLU": "N CA CB CG / CA CB CG CD / CB CG CD OE1",
    "GLY": "",
    "HIS": "N CA CB CG / CA CB CG ND1",
    "ILE": "N CA CB CG1 / CA CB CG1 CD1",
    "LEU": "N CA CB CG / CA CB CG CD1",
    "LYS": "N CA CB CG / CA CB CG CD / CB CG CD CE / CG CD CE NZ",
    "MET": "N CA CB CG / CA CB CG SD / CB CG SD CE",
    "PHE": "N CA CB CG / CA CB CG CD1",
    "PRO": "N CA CB CG / CA CB CG CD",
    "SER": "N CA CB OG",
    "THR": "N CA CB OG1",
    "TRP": "N CA CB CG / CA CB CG CD1",
    "TYR": "N CA CB CG / CA CB CG CD1",
    "VAL": "N CA CB CG1",
}

# (residue, chi index) pairs whose chi angle is only defined modulo pi: rotating the
# end group by 180 degrees gives the same structure with swapped atom names.
PI_PERIODIC_CHIS = (("ASP", 1), ("GLU", 2), ("PHE", 1), ("TYR", 1))

# Atom names that are interchangeable by symmetry (swap one for the other).
RENAMING_SWAPS = {
    "ASP": {"OD1": "OD2"},
    "GLU": {"OE1": "OE2"},
    "PHE": {"CD1": "CD2", "CE1": "CE2"},
    "TYR": {"CD1": "CD2", "CE1": "CE2"},
}

# Idealised heavy-atom positions (Angstrom). Each atom is given in the local frame
# of the rigid group it rides on: 0 backbone, 1 pre-omega, 2 phi, 3 psi,
# 4..7 chi1..chi4. A group's frame has its origin at the end atom of its rotation
# axis, x along that axis, and the atom that defines the torsion in the xy plane
# (y > 0). PRO's CD is AF2's value with the CG-CD angle opened by 2 degrees.
IDEAL_ATOMS = """
# res  atom  group       x        y        z
ALA  N     0    -0.525    1.363    0.000
ALA  CA    0     0.000    0.000    0.000
ALA  C     0     1.526   -0.000   -0.000
ALA  CB    0    -0.529   -0.774   -1.205
ALA  O     3     0.627    1.062    0.000
ARG  N     0    -0.524    1.362   -0.000
ARG  CA    0     0.000    0.000    0.000
ARG  C     0     1.525   -0.000   -0.000
ARG  CB    0    -0.524   -0.778   -1.209
ARG  O     3     0.626    1.062    0.000
ARG  CG    4     0.616    1.390   -0.000
ARG  CD    5     0.564    1.414    0.000
ARG  NE    6     0.539    1.357   -0.000
ARG  NH1   7     0.206    2.301    0.000
ARG  NH2   7     2.078    0.978   -0.000
ARG  CZ    7     0.758    1.093   -0.000
ASN  N     0    -0.536    1.357    0.000
ASN  CA    0     0.000    0.000    0.000
ASN  C     0     1.526   -0.000   -0.000
ASN  CB    0    -0.531   -0.787   -1.200
ASN  O     3     0.625    1.062    0.000
ASN  CG    4     0.584    1.399    0.000
ASN  ND2   5     0.593   -1.188    0.001
ASN  OD1   5     0.633    1.059    0.000
ASP  N     0    -0.525    1.362   -0.000
ASP  CA    0     0.000    0.000    0.000
ASP  C     0     1.527    0.000   -0.000
ASP  CB    0    -0.526   -0.778   -1.208
ASP  O     3     0.626    1.062   -0.000
ASP  CG    4     0.593    1.398   -0.000
ASP  OD1   5     0.610    1.091    0.000
ASP  OD2   5     0.592   -1.101   -0.003
CYS  N     0    -0.522    1.362   -0.000
CYS  CA    0     0.000    0.000    0.000
CYS  C     0     1.524    0.000    0.000
CYS  CB    0    -0.519   -0.773   -1.212
CYS  O     3     0.625    1.062   -0.000
CYS  SG    4     0.728    1.653    0.000
GLN  N     0    -0.526    1.361   -0.000
GLN  CA    0     0.000    0.000    0.000
GLN  C     0     1.526    0.000    0.000
GLN  CB    0    -0.525   -0.779   -1.207
GLN  O     3     0.626    1.062   -0.000
GLN  CG    4     0.615    1.393    0.000
GLN  CD    5     0.587    1.399   -0.000
GLN  NE2   6     0.593   -1.189   -0.001
GLN  OE1   6     0.634    1.060    0.000
GLU  N     0    -0.528    1.361    0.000
GLU  CA    0     0.000    0.000    0.000
GLU  C     0     1.526   -0.000   -0.000
GLU  CB    0    -0.526   -0.781   -1.207
GLU  O     3     0.626    1.062    0.000
GLU  CG    4     0.615    1.392    0.000
GLU  CD    5     0.600    1.397    0.000
GLU  OE1   6     0.607    1.095   -0.000
GLU  OE2   6     0.589   -1.104   -0.001
GLY  N     0    -0.572    1.337    0.000
GLY  CA    0     0.000    0.000    0.000
GLY  C     0     1.517   -0.000   -0.000
GLY  O     3     0.626    1.062   -0.000
HIS  N     0    -0.527    1.360    0.000
HIS  CA    0     0.000    0.000    0.000
HIS  C     0     1.525    0.000    0.000
HIS  CB    0    -0.525   -0.778   -1.208
HIS  O     3     0.625    1.063    0.000
HIS  CG    4     0.600    1.370   -0.000
HIS  CD2   5     0.889   -1.021    0.003
HIS  ND1   5     0.744    1.160   -0.000
HIS  CE1   5     2.030    0.851    0.002
HIS  NE2   5     2.145   -0.466    0.004
ILE  N     0    -0.493    1.373   -0.000
ILE  CA    0     0.000    0.000    0.000
ILE  C     0     1.527   -0.000   -0.000
ILE  CB    0    -0.536   -0.793   -1.213
ILE  O     3     0.627    1.062   -0.000
ILE  CG1   4     0.534    1.437   -0.000
ILE  CG2   4     0.540   -0.785   -1.199
ILE  CD1   5     0.619    1.391    0.000
LEU  N     0    -0.520    1.363    0.000
LEU  CA    0     0.000    0.000    0.000
LEU  C     0     1.525   -0.000   -0.000
LEU  CB    0    -0.522   -0.773   -1.214
LEU  O     3     0.625    1.063   -0.000
LEU  CG    4     0.678    1.371    0.000
LEU  CD1   5     0.530    1.430   -0.000
LEU  CD2   5     0.535   -0.774    1.200
LYS  N     0    -0.526    1.362   -0.000
LYS  CA    0     0.000    0.000    0.000
LYS  C     0     1.526    0.000    0.000
LYS  CB    0    -0.524   -0.778   -1.208
LYS  O     3     0.626    1.062   -0.000
LYS  CG    4     0.619    1.390    0.000
LYS  CD    5     0.559    1.417    0.000
LYS  CE    6     0.560    1.416    0.000
LYS  NZ    7     0.554    1.387    0.000
MET  N     0    -0.521    1.364   -0.000
MET  CA    0     0.000    0.000    0.000
MET  C     0     1.525    0.000    0.000
MET  CB    0    -0.523   -0.776   -1.210
MET  O     3     0.625    1.062   -0.000
MET  CG    4     0.613    1.391   -0.000
MET  SD    5     0.703    1.695    0.000
MET  CE    6     0.320    1.786   -0.000
PHE  N     0    -0.518    1.363    0.000
PHE  CA    0     0.000    0.000    0.000
PHE  C     0     1.524    0.000   -0.000
PHE  CB    0    -0.525   -0.776   -1.212
PHE  O     3     0.626    1.062   -0.000
PHE  CG    4     0.607    1.377    0.000
PHE  CD1   5     0.709    1.195   -0.000
PHE  CD2   5     0.706   -1.196    0.000
PHE  CE1   5     2.102    1.198   -0.000
PHE  CE2   5     2.098   -1.201   -0.000
PHE  CZ    5     2.794   -0.003   -0.001
PRO  N     0    -0.566    1.351   -0.000
PRO  CA    0     0.000    0.000    0.000
PRO  C     0     1.527   -0.000    0.000
PRO  CB    0    -0.546   -0.611   -1.293
PRO  O     3     0.621    1.066    0.000
PRO  CG    4     0.382    1.445    0.000
PRO  CD    5     0.477    1.424    0.000
SER  N     0    -0.529    1.360   -0.000
SER  CA    0     0.000    0.000    0.000
SER  C     0     1.525   -0.000   -0.000
SER  CB    0    -0.518   -0.777   -1.211
SER  O     3     0.626    1.062   -0.000
SER  OG    4     0.503    1.325    0.000
THR  N     0    -0.517    1.364    0.000
THR  CA    0     0.000    0.000    0.000
THR  C     0     1.526    0.000   -0.000
THR  CB    0    -0.516   -0.793   -1.215
THR  O     3     0.626    1.062    0.000
THR  CG2   4     0.550   -0.718   -1.228
THR  OG1   4     0.472    1.353    0.000
TRP  N     0    -0.521    1.363    0.000
TRP  CA    0     0.000    0.000    0.000
TRP  C     0     1.525   -0.000    0.000
TRP  CB    0    -0.523   -0.776   -1.212
TRP  O     3     0.627    1.062    0.000
TRP  CG    4     0.609    1.370   -0.000
TRP  CD1   5     0.824    1.091    0.000
TRP  CD2   5     0.854   -1.148   -0.005
TRP  CE2   5     2.186   -0.678   -0.007
TRP  CE3   5     0.622   -2.530   -0.007
TRP  NE1   5     2.140    0.690   -0.004
TRP  CH2   5     3.028   -2.890   -0.013
TRP  CZ2   5     3.283   -1.543   -0.011
TRP  CZ3   5     1.715   -3.389   -0.011
TYR  N     0    -0.522    1.362    0.000
TYR  CA    0     0.000    0.000    0.000
TYR  C     0     1.524   -0.000   -0.000
TYR  CB    0    -0.522   -0.776   -1.213
TYR  O     3     0.627    1.062   -0.000
TYR  CG    4     0.607    1.382   -0.000
TYR  CD1   5     0.716    1.195   -0.000
TYR  CD2   5     0.713   -1.194   -0.001
TYR  CE1   5     2.107    1.200   -0.002
TYR  CE2   5     2.104   -1.201   -0.003
TYR  OH    5     4.168   -0.002   -0.005
TYR  CZ    5     2.791   -0.001   -0.003
VAL  N     0    -0.494    1.373   -0.000
VAL  CA    0     0.000    0.000    0.000
VAL  C     0     1.527   -0.000   -0.000
VAL  CB    0    -0.533   -0.795   -1.213
VAL  O     3     0.627    1.062   -0.000
VAL  CG1   4     0.540    1.429   -0.000
VAL  CG2   4     0.533   -0.776    1.203
"""

# Bond lengths per residue: "ATOM1-ATOM2 mean stddev" in Angstrom (Engh & Huber).
BOND_LENGTHS = """
ALA: CA-CB 1.520 0.021; N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
ARG: CA-CB 1.535 0.022; CB-CG 1.521 0.027; CG-CD 1.515 0.025; CD-NE 1.460 0.017
     NE-CZ 1.326 0.013; CZ-NH1 1.326 0.013; CZ-NH2 1.326 0.013; N-CA 1.459 0.020
     CA-C 1.525 0.026; C-O 1.229 0.019
ASN: CA-CB 1.527 0.026; CB-CG 1.506 0.023; CG-OD1 1.235 0.022; CG-ND2 1.324 0.025
     N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
ASP: CA-CB 1.535 0.022; CB-CG 1.513 0.021; CG-OD1 1.249 0.023; CG-OD2 1.249 0.023
     N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
CYS: CA-CB 1.526 0.013; CB-SG 1.812 0.016; N-CA 1.459 0.020; CA-C 1.525 0.026
     C-O 1.229 0.019
GLU: CA-CB 1.535 0.022; CB-CG 1.517 0.019; CG-CD 1.515 0.015; CD-OE1 1.252 0.011
     CD-OE2 1.252 0.011; N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
GLN: CA-CB 1.535 0.022; CB-CG 1.521 0.027; CG-CD 1.506 0.023; CD-OE1 1.235 0.022
     CD-NE2 1.324 0.025; N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
GLY: N-CA 1.456 0.015; CA-C 1.514 0.016; C-O 1.232 0.016
HIS: CA-CB 1.535 0.022; CB-CG 1.492 0.016; CG-ND1 1.369 0.015; CG-CD2 1.353 0.017
     ND1-CE1 1.343 0.025; CD2-NE2 1.415 0.021; CE1-NE2 1.322 0.023; N-CA 1.459 0.020
     CA-C 1.525 0.026; C-O 1.229 0.019
ILE: CA-CB 1.544 0.023; CB-CG1 1.536 0.028; CB-CG2 1.524 0.031; CG1-CD1 1.500 0.069
     N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
LEU: CA-CB 1.533 0.023; CB-CG 1.521 0.029; CG-CD1 1.514 0.037; CG-CD2 1.514 0.037
     N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
LYS: CA-CB 1.535 0.022; CB-CG 1.521 0.027; CG-CD 1.520 0.034; CD-CE 1.508 0.025
     CE-NZ 1.486 0.025; N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
MET: CA-CB 1.535 0.022; CB-CG 1.509 0.032; CG-SD 1.807 0.026; SD-CE 1.774 0.056
     N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
PHE: CA-CB 1.535 0.022; CB-CG 1.509 0.017; CG-CD1 1.383 0.015; CG-CD2 1.383 0.015
     CD1-CE1 1.388 0.020; CD2-CE2 1.388 0.020; CE1-CZ 1.369 0.019; CE2-CZ 1.369 0.019
     N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
PRO: CA-CB 1.531 0.020; CB-CG 1.495 0.050; CG-CD 1.502 0.033; CD-N 1.474 0.014
     N-CA 1.468 0.017; CA-C 1.524 0.020; C-O 1.228 0.020
SER: CA-CB 1.525 0.015; CB-OG 1.418 0.013; N-CA 1.459 0.020; CA-C 1.525 0.026
     C-O 1.229 0.019
THR: CA-CB 1.529 0.026; CB-OG1 1.428 0.020; CB-CG2 1.519 0.033; N-CA 1.459 0.020
     CA-C 1.525 0.026; C-O 1.229 0.019
TRP: CA-CB 1.535 0.022; CB-CG 1.498 0.018; CG-CD1 1.363 0.014; CG-CD2 1.432 0.017
     CD1-NE1 1.375 0.017; NE1-CE2 1.371 0.013; CD2-CE2 1.409 0.012; CD2-CE3 1.399 0.015
     CE2-CZ2 1.393 0.017; CE3-CZ3 1.380 0.017; CZ2-CH2 1.369 0.019; CZ3-CH2 1.396 0.016
     N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
TYR: CA-CB 1.535 0.022; CB-CG 1.512 0.015; CG-CD1 1.387 0.013; CG-CD2 1.387 0.013
     CD1-CE1 1.389 0.015; CD2-CE2 1.389 0.015; CE1-CZ 1.381 0.013; CE2-CZ 1.381 0.013
     CZ-OH 1.374 0.017; N-CA 1.459 0.020; CA-C 1.525 0.026; C-O 1.229 0.019
VAL: CA-CB 1.543 0.021; CB-CG1 1.524 0.021; CB-CG2 1.524 0.021; N-CA 1.459 0.020
     CA-C 1.525 0.026; C-O 1.229 0.019
"""

# Bond angles per residue: "ATOM1-ATOM2-ATOM3 mean stddev" in degrees, ATOM2 being
# the vertex (Engh & Huber).
BOND_ANGLES = """
ALA: N-CA-CB 110.1 1.4; CB-CA-C 110.1 1.5; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
ARG: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.4 2.2; CB-CG-CD 111.6 2.6
     CG-CD-NE 111.8 2.1; CD-NE-CZ 123.6 1.4; NE-CZ-NH1 120.3 0.5; NE-CZ-NH2 120.3 0.5
     NH1-CZ-NH2 119.4 1.1; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
ASN: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.4 2.2; CB-CG-ND2 116.7 2.4
     CB-CG-OD1 121.6 2.0; ND2-CG-OD1 121.9 2.3; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
ASP: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.4 2.2; CB-CG-OD1 118.3 0.9
     CB-CG-OD2 118.3 0.9; OD1-CG-OD2 123.3 1.9; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
CYS: N-CA-CB 110.8 1.5; CB-CA-C 111.5 1.2; CA-CB-SG 114.2 1.1; N-CA-C 111.0 2.7
     CA-C-O 120.1 2.1
GLU: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.4 2.2; CB-CG-CD 114.2 2.7
     CG-CD-OE1 118.3 2.0; CG-CD-OE2 118.3 2.0; OE1-CD-OE2 123.3 1.2; N-CA-C 111.0 2.7
     CA-C-O 120.1 2.1
GLN: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.4 2.2; CB-CG-CD 111.6 2.6
     CG-CD-OE1 121.6 2.0; CG-CD-NE2 116.7 2.4; OE1-CD-NE2 121.9 2.3; N-CA-C 111.0 2.7
     CA-C-O 120.1 2.1
GLY: N-CA-C 113.1 2.5; CA-C-O 120.6 1.8
HIS: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.6 1.7; CB-CG-ND1 123.2 2.5
     CB-CG-CD2 130.8 3.1; CG-ND1-CE1 108.2 1.4; ND1-CE1-NE2 109.9 2.2; CE1-NE2-CD2 106.6 2.5
     NE2-CD2-CG 109.2 1.9; CD2-CG-ND1 106.0 1.4; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
ILE: N-CA-CB 110.8 2.3; CB-CA-C 111.6 2.0; CA-CB-CG1 111.0 1.9; CB-CG1-CD1 113.9 2.8
     CA-CB-CG2 110.9 2.0; CG1-CB-CG2 111.4 2.2; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
LEU: N-CA-CB 110.4 2.0; CB-CA-C 110.2 1.9; CA-CB-CG 115.3 2.3; CB-CG-CD1 111.0 1.7
     CB-CG-CD2 111.0 1.7; CD1-CG-CD2 110.5 3.0; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
LYS: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.4 2.2; CB-CG-CD 111.6 2.6
     CG-CD-CE 111.9 3.0; CD-CE-NZ 111.7 2.3; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
MET: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.3 1.7; CB-CG-SD 112.4 3.0
     CG-SD-CE 100.2 1.6; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
PHE: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.9 2.4; CB-CG-CD1 120.8 0.7
     CB-CG-CD2 120.8 0.7; CD1-CG-CD2 118.3 1.3; CG-CD1-CE1 120.8 1.1; CG-CD2-CE2 120.8 1.1
     CD1-CE1-CZ 120.1 1.2; CD2-CE2-CZ 120.1 1.2; CE1-CZ-CE2 120.0 1.8; N-CA-C 111.0 2.7
     CA-C-O 120.1 2.1
PRO: N-CA-CB 103.3 1.2; CB-CA-C 111.7 2.1; CA-CB-CG 104.8 1.9; CB-CG-CD 106.5 3.9
     CG-CD-N 103.2 1.5; CA-N-CD 111.7 1.4; N-CA-C 112.1 2.6; CA-C-O 120.2 2.4
SER: N-CA-CB 110.5 1.5; CB-CA-C 110.1 1.9; CA-CB-OG 111.2 2.7; N-CA-C 111.0 2.7
     CA-C-O 120.1 2.1
THR: N-CA-CB 110.3 1.9; CB-CA-C 111.6 2.7; CA-CB-OG1 109.0 2.1; CA-CB-CG2 112.4 1.4
     OG1-CB-CG2 110.0 2.3; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
TRP: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.7 1.9; CB-CG-CD1 127.0 1.3
     CB-CG-CD2 126.6 1.3; CD1-CG-CD2 106.3 0.8; CG-CD1-NE1 110.1 1.0; CD1-NE1-CE2 109.0 0.9
     NE1-CE2-CD2 107.3 1.0; CE2-CD2-CG 107.3 0.8; CG-CD2-CE3 133.9 0.9; NE1-CE2-CZ2 130.4 1.1
     CE3-CD2-CE2 118.7 1.2; CD2-CE2-CZ2 122.3 1.2; CE2-CZ2-CH2 117.4 1.0; CZ2-CH2-CZ3 121.6 1.2
     CH2-CZ3-CE3 121.2 1.1; CZ3-CE3-CD2 118.8 1.3; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
TYR: N-CA-CB 110.6 1.8; CB-CA-C 110.4 2.0; CA-CB-CG 113.4 1.9; CB-CG-CD1 121.0 0.6
     CB-CG-CD2 121.0 0.6; CD1-CG-CD2 117.9 1.1; CG-CD1-CE1 121.3 0.8; CG-CD2-CE2 121.3 0.8
     CD1-CE1-CZ 119.8 0.9; CD2-CE2-CZ 119.8 0.9; CE1-CZ-CE2 119.8 1.6; CE1-CZ-OH 120.1 2.7
     CE2-CZ-OH 120.1 2.7; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
VAL: N-CA-CB 111.5 2.2; CB-CA-C 111.4 1.9; CA-CB-CG1 110.9 1.5; CA-CB-CG2 110.9 1.5
     CG1-CB-CG2 110.9 1.6; N-CA-C 111.0 2.7; CA-C-O 120.1 2.1
"""

# Van der Waals radii (Angstrom) by element.
VAN_DER_WAALS_RADIUS = {"C": 1.7, "N": 1.55, "O": 1.52, "S": 1.8}

# Peptide bond C(i)-N(i+1) length (Angstrom) and its stddev, as
# (any residue, proline) pairs: proline's N is bonded to its own CD as well.
PEPTIDE_C_N_LENGTH = (1.329, 1.341)
PEPTIDE_C_N_LENGTH_STDDEV = (0.014, 0.016)
# Cosines of the angles around the peptide bond, as (mean, stddev):
# C(i)-N(i+1)-CA(i+1) is 121.352 +- 2.315 degrees, CA(i)-C(i)-N(i+1) 116.568 +- 1.995.
PEPTIDE_COS_C_N_CA = (-0.5203, 0.0353)
PEPTIDE_COS_CA_C_N = (-0.4473, 0.0311)

# CA(i)-CA(i+1) distance (Angstrom) for a trans peptide (omega = 180 degrees).
CA_CA_DISTANCE = 3.80209737096
