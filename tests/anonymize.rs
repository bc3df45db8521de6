//! The typical and strict profiles, end to end: dcmtk sends exams full of patient
//! data; what comes out must hold none of it.

mod common;

use std::path::{Path, PathBuf};

use common::orthanc::Orthanc;
use common::*;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, open_file};

fn dir_destination(name: &str, dir: &Path, profile: &str) -> String {
    format!(
        "\n[[destination]]\nname = \"{name}\"\nurl = \"dir:{}\"\nprofile = \"{profile}\"\n",
        dir.display()
    )
}

/// An agent with a strict and a typical folder destination under `out`.
fn strict_and_typical(out: &Path) -> (Agent, PathBuf, PathBuf) {
    let (strict_dir, typical_dir) = (out.join("strict"), out.join("typical"));
    let agent = Agent::start(&format!(
        "{}{}",
        dir_destination("research", &strict_dir, "strict"),
        dir_destination("patient", &typical_dir, "typical")
    ));
    (agent, strict_dir, typical_dir)
}

/// An agent with a strict folder destination and an identified archive under `out`.
fn strict_and_archive(out: &Path) -> (Agent, PathBuf, PathBuf) {
    let (strict_dir, archive_dir) = (out.join("strict"), out.join("archive"));
    let agent = Agent::start(&format!(
        "{}{}",
        dir_destination("research", &strict_dir, "strict"),
        dir_destination("archive", &archive_dir, "identified")
    ));
    (agent, strict_dir, archive_dir)
}

/// Sends with a calling AE title that names the site: it must not reach anonymized
/// files (the agent's own log names peers, so tests of the log send as `US1`).
fn send_as(agent: &Agent, aet: &str, files: &[PathBuf]) {
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = storescu(agent.port, &["-R", "-aet", aet], &refs);
    assert!(out.status.success(), "{}", text(&out));
}

fn assert_no_marker(what: &str, bytes: &[u8]) {
    for marker in MARKERS {
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{what} still holds {marker:?}"
        );
    }
}

fn string(object: &DefaultDicomObject, tag: dicom_core::Tag) -> String {
    object
        .element(tag)
        .map(|e| {
            e.to_str()
                .map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
                .unwrap_or_default()
        })
        .unwrap_or_else(|_| "<absent>".into())
}

fn referenced_uid(object: &DefaultDicomObject) -> String {
    let items = object
        .element(tags::REFERENCED_IMAGE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    items[0]
        .element(tags::REFERENCED_SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_owned()
}

#[test]
fn typical_and_strict_leave_no_patient_data_and_keep_the_image() {
    let out = tempfile::tempdir().unwrap();
    let (agent, strict_dir, typical_dir) = strict_and_typical(out.path());
    let input = tempfile::tempdir().unwrap();
    let mut files = phi_study(input.path(), "ANNA", 1, 3);
    files.extend(phi_study(input.path(), "BERT", 2, 1));
    send_as(&agent, "ZQXSITE", &files);

    // The two copies of an instance share no UID: they cannot be joined.
    let uids_of = |dir: &Path| -> std::collections::BTreeSet<String> {
        agent
            .wait_files(dir, 4)
            .iter()
            .flat_map(|p| {
                let o = open_file(p).unwrap();
                [
                    tags::SOP_INSTANCE_UID,
                    tags::STUDY_INSTANCE_UID,
                    tags::SERIES_INSTANCE_UID,
                ]
                .map(|t| string(&o, t))
            })
            .collect()
    };
    let (strict_uids, typical_uids) = (uids_of(&strict_dir), uids_of(&typical_dir));
    assert!(
        strict_uids.is_disjoint(&typical_uids),
        "shared: {:?}",
        strict_uids.intersection(&typical_uids).collect::<Vec<_>>()
    );

    for (profile, dir) in [("strict", &strict_dir), ("typical", &typical_dir)] {
        let outputs = agent.wait_files(dir, 4);
        let objects: Vec<DefaultDicomObject> =
            outputs.iter().map(|p| open_file(p).unwrap()).collect();
        for (path, object) in outputs.iter().zip(&objects) {
            let what = format!("{profile} {}", path.display());
            assert_no_marker(&what, &std::fs::read(path).unwrap());
            let dump = dcmtk("dcmdump", &["-q", "+M", path.to_str().unwrap()]);
            assert!(dump.status.success(), "{what}: {}", text(&dump));
            let dump = text(&dump);
            for private in ["(0009,", "(0011,", "(6000,"] {
                assert!(!dump.contains(private), "{what} keeps {private}");
            }
            assert_eq!(
                string(object, tags::PATIENT_IDENTITY_REMOVED),
                "YES",
                "{what}"
            );
            assert!(
                string(object, tags::DEIDENTIFICATION_METHOD).contains("PS3.15"),
                "{what}"
            );
            let uid = string(object, tags::SOP_INSTANCE_UID);
            assert!(uid.starts_with("2.25."), "{what}: {uid}");
            assert_eq!(
                object.meta().media_storage_sop_instance_uid(),
                uid,
                "{what}: meta agrees"
            );
            assert!(
                object.meta().source_application_entity_title().is_none(),
                "{what}: no sender AE in the meta"
            );
            assert_eq!(
                path.file_stem().unwrap().to_string_lossy(),
                uid,
                "{what}: named by the new UID"
            );
            // The banner is blank, the image below it untouched.
            let pixels = object
                .element(tags::PIXEL_DATA)
                .unwrap()
                .to_bytes()
                .unwrap();
            let original = phi_pixels(60, 80);
            let banner = usize::from(BANNER_ROWS) * 80 * 3;
            assert!(
                pixels[..banner].iter().all(|&b| b == 0),
                "{what}: banner not blanked"
            );
            assert_eq!(
                pixels[banner..],
                original[banner..],
                "{what}: image changed"
            );
            assert_eq!(string(object, tags::BURNED_IN_ANNOTATION), "NO", "{what}");
        }
        // One study stays one study; references follow their instances.
        let study = |o: &DefaultDicomObject| string(o, tags::STUDY_INSTANCE_UID);
        let studies: std::collections::BTreeSet<String> = objects.iter().map(study).collect();
        assert_eq!(studies.len(), 2, "{profile}: two studies in, two out");
        for object in &objects {
            let first = objects.iter().find(|o| {
                study(o) == study(object)
                    && string(o, tags::SOP_INSTANCE_UID) == referenced_uid(object)
            });
            assert!(
                first.is_some(),
                "{profile}: a reference does not lead to its instance"
            );
        }
        let first = &objects[0];
        if profile == "strict" {
            assert_eq!(string(first, tags::PATIENT_NAME), "ANONYMOUS");
            assert_eq!(string(first, tags::PATIENT_ID), "000000");
            assert_eq!(string(first, tags::PATIENT_SEX), "O");
            assert_eq!(string(first, tags::PATIENT_BIRTH_DATE), "19900101");
            assert_eq!(string(first, tags::STUDY_DATE), "20170101");
            assert_eq!(string(first, tags::STUDY_TIME), "");
            assert_eq!(
                string(first, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED),
                "MODIFIED"
            );
        } else {
            assert_eq!(string(first, tags::PATIENT_NAME), "");
            assert_eq!(string(first, tags::PATIENT_ID), "");
            assert_eq!(
                string(first, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED),
                "REMOVED"
            );
        }
        for gone in [
            tags::PATIENT_ADDRESS,
            tags::INSTITUTION_NAME,
            tags::OPERATORS_NAME,
            tags::REQUEST_ATTRIBUTES_SEQUENCE,
        ] {
            assert_eq!(string(first, gone), "<absent>", "{profile}: {gone} kept");
        }
    }
}

#[test]
fn strict_keeps_patient_data_off_the_card_and_out_of_the_logs() {
    let out = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir_destination("research", out.path(), "strict"));
    let input = tempfile::tempdir().unwrap();
    let files = phi_study(input.path(), "CARL", 3, 2);
    send_as(&agent, "US1", &files);
    wait_until(30, || dcm_files(out.path()).len() == 2, || agent.log());
    // Let the status file catch up, so that it is scanned with the deliveries in it.
    agent.wait_destination(10, "delivered", 2);
    // Every byte the agent wrote: spool, queue index, status, device key, log.
    let written = agent.written_files();
    for (path, bytes) in &written {
        assert_no_marker(&path.display().to_string(), bytes);
    }
    let scanned = written.len();
    assert!(scanned >= 3, "scanned {scanned} files");
    assert_no_marker("the agent's log", agent.log().as_bytes());
    let status = agent.status_text();
    assert_no_marker("status", status.as_bytes());
}

/// Two instances no profile can clean: no ultrasound regions and texture over the
/// whole screen (nobody can tell where the banner ends), native; and JPEG baseline
/// whose frame does not decode (so no image area can be found in it).
fn uncleanable(dir: &Path) -> Vec<PathBuf> {
    let plain = dir.join("plain.dcm");
    write_us_image(&plain, "1.2.826.0.1.3680043.10.31.1", EXPLICIT_LE, 40, 40);
    let jpeg = dir.join("jpeg.dcm");
    write_jpeg_image(&jpeg, "1.2.826.0.1.3680043.10.31.2");
    vec![plain, jpeg]
}

#[test]
fn an_instance_no_destination_can_take_clean_is_refused_and_never_kept() {
    let out = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir_destination("research", out.path(), "strict"));
    let input = tempfile::tempdir().unwrap();
    let files = uncleanable(input.path());
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let sent = storescu(agent.port, &["-v", "-nh", "-R", "-xy"], &refs);
    // The modality keeps its copy and shows why.
    let said = text(&sent);
    assert_eq!(
        said.matches("Received Store Response (Error: CannotUnderstand)")
            .count(),
        2,
        "both refused with C110H:\n{said}"
    );
    let log = agent.log();
    for reason in [
        "no ultrasound regions, and no image area found in the pixels",
        "the JPEG frame cannot be decoded",
    ] {
        assert_eq!(
            log.matches(&format!(
                "refused with C110H: not stored: it cannot be anonymized (burned-in text: {reason}"
            ))
            .count(),
            1,
            "{reason}: {log}"
        );
    }
    assert!(agent.spool_files().is_empty(), "nothing kept on the card");
    assert!(dcm_files(out.path()).is_empty(), "nothing delivered");
    wait_until(
        5,
        || agent.status_json()["counters"]["instances_refused"] == 2,
        || agent.status_json().to_string(),
    );
    let status = agent.status_json();
    assert_eq!(status["destinations"][0]["quarantined"], 0, "{status}");
}

#[test]
fn a_copy_that_cannot_be_cleaned_is_not_kept_and_the_others_are_delivered() {
    let out = tempfile::tempdir().unwrap();
    let (agent, strict_dir, archive_dir) = strict_and_archive(out.path());
    let input = tempfile::tempdir().unwrap();
    let files = uncleanable(input.path());
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let sent = storescu(agent.port, &["-R", "-xy"], &refs);
    assert!(sent.status.success(), "{}", text(&sent));
    agent.wait_files(&archive_dir, 2);
    agent.wait_spool_empty(10);
    assert!(dcm_files(&strict_dir).is_empty());
    wait_until(
        5,
        || agent.status_json()["destinations"][0]["not_deliverable"] != serde_json::json!({}),
        || agent.status_json().to_string(),
    );
    let research = &agent.status_json()["destinations"][0];
    assert_eq!(research["name"], "research");
    let counts = research["not_deliverable"].as_object().unwrap();
    assert_eq!(
        counts.values().filter_map(|n| n.as_u64()).sum::<u64>(),
        2,
        "{research}"
    );
    assert_eq!(research["quarantined"], 0, "{research}");
    let said = agent.status_text();
    assert!(said.contains("NOT DELIVERABLE to research"), "{said}");
    // Nothing is left that retry-quarantine could send.
    let retry = std::process::Command::new(env!("CARGO_BIN_EXE_uplink"))
        .args(["retry-quarantine", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    assert!(retry.status.success(), "{}", text(&retry));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(dcm_files(&strict_dir).is_empty(), "never sent to research");
}

#[test]
fn pixel_claims_are_true_and_thumbnails_go() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let out = tempfile::tempdir().unwrap();
    let (agent, strict_dir, archive_dir) = strict_and_archive(out.path());
    let input = tempfile::tempdir().unwrap();
    let files = phi_study(input.path(), "HANS", 60, 2);
    // The first arrives without Burned In Annotation (as most real US files do) and
    // with an icon of the unblanked screen; the second's only region is the whole
    // frame, and its pixels are texture throughout.
    let mut first = open_file(&files[0]).unwrap();
    first.remove_element(tags::BURNED_IN_ANNOTATION);
    let icon = dicom_object::InMemDicomObject::from_element_iter([
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(1_u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(8_u16)),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(b"ZQXICON!".to_vec()),
        ),
    ]);
    first.put(DataElement::new(
        tags::ICON_IMAGE_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![icon]),
    ));
    first.write_to_file(&files[0]).unwrap();
    let mut second = open_file(&files[1]).unwrap();
    let regions = second
        .element(tags::SEQUENCE_OF_ULTRASOUND_REGIONS)
        .unwrap()
        .clone();
    let mut item = regions.items().unwrap()[0].clone();
    item.put(DataElement::new(
        tags::REGION_LOCATION_MIN_Y0,
        VR::UL,
        PrimitiveValue::from(0_u32),
    ));
    second.put(DataElement::new(
        tags::SEQUENCE_OF_ULTRASOUND_REGIONS,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![item]),
    ));
    // Texture over the whole screen: the pixels cannot tell where text is either.
    let texture: Vec<u8> = (0..60 * 80 * 3).map(|i| (i * 7 % 251) as u8).collect();
    second.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(texture),
    ));
    second.write_to_file(&files[1]).unwrap();
    send_as(&agent, "US1", &files);

    agent.wait_files(&archive_dir, 2);
    agent.wait_spool_empty(10);
    let delivered = dcm_files(&strict_dir);
    assert_eq!(
        delivered.len(),
        1,
        "only the first can be cleaned: {delivered:?}"
    );
    assert_no_marker("strict", &std::fs::read(&delivered[0]).unwrap());
    let object = open_file(&delivered[0]).unwrap();
    assert_eq!(string(&object, tags::BURNED_IN_ANNOTATION), "NO");
    assert_eq!(string(&object, tags::ICON_IMAGE_SEQUENCE), "<absent>");
    wait_until(
        5,
        || agent.status_json()["destinations"][0]["not_deliverable"] != serde_json::json!({}),
        || agent.status_json().to_string(),
    );
    let research = &agent.status_json()["destinations"][0];
    let reasons: Vec<&String> = research["not_deliverable"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    // A region over the whole frame says nothing; the pixels are texture throughout.
    assert!(reasons[0].contains("no image area found"), "{research}");
}

#[test]
fn a_cleanable_syntax_is_chosen_when_a_modality_offers_it_second() {
    let out = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir_destination("research", out.path(), "strict"));
    let input = tempfile::tempdir().unwrap();
    let native = phi_study(input.path(), "GRETA", 50, 1).remove(0);
    // One presentation context lists MPEG-2 first and uncompressed second, as
    // modalities set up for video do; storescu sends the native file as it is if
    // uncompressed is chosen (and fails: it cannot encode MPEG-2).
    let config = input.path().join("scu.cfg");
    std::fs::write(
        &config,
        "[[TransferSyntaxes]]\n[VideoFirst]\n\
         TransferSyntax1 = 1.2.840.10008.1.2.4.100\n\
         TransferSyntax2 = 1.2.840.10008.1.2.1\n\
         [[PresentationContexts]]\n[Contexts]\n\
         PresentationContext1 = 1.2.840.10008.5.1.4.1.1.6.1\\VideoFirst\n\
         [[Profiles]]\n[Ultrasound]\nPresentationContexts = Contexts\n",
    )
    .unwrap();
    let sent = storescu(
        agent.port,
        &["-xf", config.to_str().unwrap(), "Ultrasound"],
        &[&native],
    );
    assert!(sent.status.success(), "{}", text(&sent));
    let delivered = agent.wait_files(out.path(), 1);
    let object = open_file(&delivered[0]).unwrap();
    assert_eq!(object.meta().transfer_syntax(), EXPLICIT_LE);
    assert_eq!(string(&object, tags::PATIENT_NAME), "ANONYMOUS");
    agent.wait_destination(5, "quarantined", 0);
}

#[test]
fn strict_studies_look_the_same_in_orthanc() {
    let orthanc = Orthanc::start();
    let agent = Agent::start(&format!(
        "\n[[destination]]\nname = \"cloud\"\nurl = \"{}\"\nprofile = \"strict\"\ninsecure = true\n",
        orthanc.dicomweb_url()
    ));
    let input = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, patient) in ["DORA", "EMIL", "FINN"].iter().enumerate() {
        files.extend(phi_study(input.path(), patient, 40 + i as u32, 1));
    }
    send_as(&agent, "US1", &files);
    orthanc.wait_instances(3, 60, || agent.log());
    let rows = orthanc.study_rows();
    assert_eq!(rows.len(), 3, "three studies: {rows:?}");
    for row in &rows {
        assert_eq!(row, &rows[0], "every strict study shows the same row");
    }
    assert_eq!(
        rows[0],
        ["ANONYMOUS", "000000", "19900101", "O", "20170101"].map(String::from)
    );
}

#[test]
fn typical_protects_pdf_reports_and_strict_discards_them() {
    let out = tempfile::tempdir().unwrap();
    let (agent, strict_dir, typical_dir) = strict_and_typical(out.path());
    let input = tempfile::tempdir().unwrap();
    let report = pdf_report(input.path());
    let sent = storescu(agent.port, &["-R"], &[&report]);
    assert!(sent.status.success(), "{}", text(&sent));

    let delivered = agent.wait_files(&typical_dir, 1).remove(0);
    assert_no_marker("typical PDF instance", &std::fs::read(&delivered).unwrap());
    let object = open_file(&delivered).unwrap();
    let document = object
        .element(tags::ENCAPSULATED_DOCUMENT)
        .unwrap()
        .to_bytes()
        .unwrap();
    let protected = input.path().join("protected.pdf");
    // The value may carry one pad byte after %%EOF; PDF readers do not mind.
    std::fs::write(&protected, &document[..]).unwrap();
    let requires = std::process::Command::new("qpdf")
        .arg("--requires-password")
        .arg(&protected)
        .status()
        .unwrap();
    assert_eq!(
        requires.code(),
        Some(0),
        "qpdf: the PDF must require a password"
    );
    // The clinic finds the password in the data dir's book, by the original study UID.
    let book = std::fs::read_to_string(agent.data_dir().join("document-passwords.tsv")).unwrap();
    let password = book
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .nth(2)
        .unwrap()
        .to_owned();
    let decrypted = input.path().join("decrypted.pdf");
    let opened = std::process::Command::new("qpdf")
        .arg(format!("--password={password}"))
        .args(["--decrypt", "--qdf"])
        .arg(&protected)
        .arg(&decrypted)
        .output()
        .unwrap();
    assert!(
        opened.status.success(),
        "the recorded password opens it: {}",
        text(&opened)
    );
    assert!(
        std::fs::read(&decrypted)
            .unwrap()
            .windows(3)
            .any(|w| w == b"ZQX"),
        "same report inside"
    );
    let wrong = std::process::Command::new("qpdf")
        .args(["--password=wrong", "--decrypt"])
        .arg(&protected)
        .arg(input.path().join("nope.pdf"))
        .status()
        .unwrap();
    assert!(!wrong.success());
    assert!(
        !agent.log().contains(&password),
        "the password never reaches the log"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        dcm_files(&strict_dir).is_empty(),
        "strict discards non-DICOM content"
    );
    // ... and says so: the clinic sees what did not go to the cloud.
    let reason = "encapsulated document (PDF, CDA, STL)";
    wait_until(
        5,
        || agent.status_json()["destinations"][0]["discarded"][reason] == 1,
        || agent.status_json().to_string(),
    );
    let research = &agent.status_json()["destinations"][0];
    assert_eq!(research["name"], "research");
    assert_eq!(research["discarded"][reason], 1, "{research}");
    let said = agent.status_text();
    assert!(
        said.contains(&format!("discarded by profile strict: 1 {reason}")),
        "{said}"
    );
}

/// One pipeline: what `uplink anonymize` writes with the box's key is, byte for
/// byte, what the box delivers for the same instance.
#[test]
fn the_box_and_the_offline_command_give_the_same_bytes() {
    let out = tempfile::tempdir().unwrap();
    let (agent, strict_dir, typical_dir) = strict_and_typical(out.path());
    let input = tempfile::tempdir().unwrap();
    let mut files = phi_study(input.path(), "JONAS", 80, 2);
    let jpeg = input.path().join("jpeg.dcm");
    let phi = Phi {
        patient: "JONAS",
        study: 80,
        instance: 3,
        rows: 64,
        cols: 96,
    };
    write_phi_jpeg(&jpeg, &phi, 2);
    files.push(jpeg);
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let sent = storescu(agent.port, &["-R", "-xy"], &refs);
    assert!(sent.status.success(), "{}", text(&sent));
    for (profile, dir) in [("strict", &strict_dir), ("typical", &typical_dir)] {
        let delivered = agent.wait_files(dir, 3);
        let offline = out.path().join(format!("offline-{profile}"));
        let ran = anonymize_offline(&agent.config, profile, &offline, &files);
        assert!(ran.status.success(), "{}", text(&ran));
        for path in &delivered {
            let twin = offline.join(path.file_name().unwrap());
            assert!(
                std::fs::read(path).unwrap() == std::fs::read(&twin).unwrap(),
                "{profile}: {} differs from the offline {}",
                path.display(),
                twin.display()
            );
        }
    }
}

#[test]
fn offline_anonymize_uses_the_same_engine_and_key() {
    let work = tempfile::tempdir().unwrap();
    let config = offline_config(work.path(), "");
    let input = work.path().join("in");
    std::fs::create_dir_all(input.join("nested")).unwrap();
    phi_study(&input.join("nested"), "GRETA", 50, 3);
    write_us_image(
        &input.join("no-regions.dcm"),
        "1.2.826.0.1.3680043.10.51.1",
        EXPLICIT_LE,
        40,
        40,
    );
    let run = |out: &Path| anonymize_offline(&config, "strict", out, [&input]);
    let (first, second) = (work.path().join("out1"), work.path().join("out2"));
    let report = run(&first);
    let said = text(&report);
    assert_eq!(
        report.status.code(),
        Some(1),
        "a file that could not be cleaned fails the run: {said}"
    );
    assert!(
        said.contains("3 anonymized, 0 discarded, 1 failed"),
        "{said}"
    );
    assert!(said.contains("no ultrasound regions"), "{said}");
    let files = dcm_files(&first);
    assert_eq!(files.len(), 3);
    // dciodvfy (dicom3tools) finds nothing wrong in the output that was not wrong in the input.
    let iod_errors = |path: &Path| -> std::collections::BTreeSet<String> {
        let out = std::process::Command::new("dciodvfy")
            .arg(path)
            .output()
            .expect("cannot run dciodvfy (dicom3tools)");
        text(&out)
            .lines()
            .filter(|l| l.starts_with("Error"))
            .map(str::to_owned)
            .collect()
    };
    let input_errors = iod_errors(&input.join("nested").join("GRETA-50-1.dcm"));
    for file in &files {
        assert_no_marker(&file.display().to_string(), &std::fs::read(file).unwrap());
        let dump = dcmtk("dcmdump", &["-q", file.to_str().unwrap()]);
        assert!(dump.status.success(), "{}", text(&dump));
        let new: Vec<String> = iod_errors(file)
            .difference(&input_errors)
            .cloned()
            .collect();
        assert!(new.is_empty(), "anonymization made the IOD worse: {new:?}");
    }
    // The device key makes the same UIDs every time.
    run(&second);
    let names = |dir: &Path| {
        dcm_files(dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&first), names(&second));
}

#[test]
fn jpeg_baseline_frames_are_blanked_without_touching_the_image() {
    let out = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir_destination("research", out.path(), "strict"));
    let input = tempfile::tempdir().unwrap();
    let jpeg = input.path().join("jpeg.dcm");
    write_phi_jpeg(
        &jpeg,
        &Phi {
            patient: "HANS",
            study: 60,
            instance: 1,
            rows: 64,
            cols: 96,
        },
        1,
    );
    // An Extended Offset Table: it would point into the fragments as they were.
    let mut object = open_file(&jpeg).unwrap();
    let size = std::fs::metadata(&jpeg).unwrap().len();
    for (tag, value) in [
        (tags::EXTENDED_OFFSET_TABLE, 0_u64),
        (tags::EXTENDED_OFFSET_TABLE_LENGTHS, size),
    ] {
        object.put(dicom_core::DataElement::new(
            tag,
            dicom_core::VR::OV,
            dicom_core::PrimitiveValue::from(value.to_le_bytes().to_vec()),
        ));
    }
    object.write_to_file(&jpeg).unwrap();
    let sent = storescu(agent.port, &["-R", "-xy"], &[&jpeg]);
    assert!(sent.status.success(), "{}", text(&sent));
    let delivered = agent.wait_files(out.path(), 1).remove(0);
    assert_eq!(file_transfer_syntax(&delivered), JPEG_BASELINE);
    let object = open_file(&delivered).unwrap();
    assert_eq!(string(&object, tags::EXTENDED_OFFSET_TABLE), "<absent>");
    assert_eq!(
        string(&object, tags::EXTENDED_OFFSET_TABLE_LENGTHS),
        "<absent>"
    );
    assert_no_marker("JPEG instance", &std::fs::read(&delivered).unwrap());
    let first_fragment = |path: &std::path::Path| {
        let object = open_file(path).unwrap();
        let fragments = object
            .element(tags::PIXEL_DATA)
            .unwrap()
            .value()
            .fragments()
            .unwrap()
            .to_vec();
        assert_eq!(fragments.len(), 1);
        jpeg_decoder::Decoder::new(&fragments[0][..])
            .decode()
            .unwrap()
    };
    let (decoded, original) = (first_fragment(&delivered), first_fragment(&jpeg));
    let banner = usize::from(BANNER_ROWS) * 96 * 3;
    assert!(
        decoded[..banner - 96 * 3 * 2].iter().all(|&b| b < 24),
        "banner blanked"
    );
    // Blanked in the DCT domain: two block rows below the banner, every pixel is
    // what the sender's own frame decodes to.
    let below = banner + 96 * 3 * 16;
    assert!(decoded[below..] == original[below..], "image changed");
    let object = open_file(&delivered).unwrap();
    assert_eq!(string(&object, tags::BURNED_IN_ANNOTATION), "NO");
    let dump = dcmtk("dcmdump", &["-q", delivered.to_str().unwrap()]);
    assert!(dump.status.success(), "{}", text(&dump));
    // dcmtk's own JPEG decoder reads the frame too.
    let native = input.path().join("native.dcm");
    let decompressed = dcmtk(
        "dcmdjpeg",
        &[delivered.to_str().unwrap(), native.to_str().unwrap()],
    );
    assert!(decompressed.status.success(), "{}", text(&decompressed));
}

#[test]
fn structured_reports_keep_measurements_and_lose_what_identifies() {
    let out = tempfile::tempdir().unwrap();
    let agent = Agent::start(&dir_destination("research", out.path(), "strict"));
    let input = tempfile::tempdir().unwrap();
    let sr = input.path().join("sr.dcm");
    write_phi_sr(&sr, "1.2.826.0.1.3680043.10.70.9");
    let sent = storescu(agent.port, &["-R"], &[&sr]);
    assert!(sent.status.success(), "{}", text(&sent));
    let delivered = agent.wait_files(out.path(), 1).remove(0);
    assert_no_marker("SR", &std::fs::read(&delivered).unwrap());
    let dump = text(&dcmtk("dcmdump", &["-q", delivered.to_str().unwrap()]));
    assert!(dump.contains("[52.5]"), "the femur length is kept:\n{dump}");
    assert!(dump.contains("Femur Length"), "{dump}");
    assert!(
        dump.contains("113104"),
        "Clean Structured Content is declared:\n{dump}"
    );
}

/// dciodvfy's errors of a file, without the values they quote.
fn dciodvfy_errors(file: &Path) -> std::collections::BTreeSet<String> {
    let out = std::process::Command::new("dciodvfy")
        .arg(file)
        .output()
        .expect("dciodvfy (dicom3tools) runs");
    text(&out)
        .lines()
        .filter(|l| l.starts_with("Error"))
        .map(|l| l.split(" = <").next().unwrap().to_owned())
        .collect()
}

/// Every copy validates with dciodvfy no worse than its input: Type 1 attributes the
/// profile must clean get a dummy, Type 2 ones stay present and empty (sequences
/// too), a removed attribute takes its conditional partners with it.
#[test]
fn anonymized_headers_are_as_valid_as_they_came() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    write_phi_image(
        &input.join("image.dcm"),
        &Phi {
            patient: "IRMA",
            study: 81,
            instance: 1,
            rows: 60,
            cols: 80,
        },
    );
    write_phi_jpeg(
        &input.join("clip.dcm"),
        &Phi {
            patient: "IRMA",
            study: 81,
            instance: 2,
            rows: 64,
            cols: 64,
        },
        2,
    );
    write_phi_sr(&input.join("sr.dcm"), "1.2.826.0.1.3680043.10.81.3");
    let config = offline_config(work.path(), "");
    let mut worse = Vec::new();
    for profile in ["typical", "strict"] {
        let out = work.path().join(profile);
        let ran = anonymize_offline(&config, profile, &out, [&input]);
        assert!(ran.status.success(), "{}", text(&ran));
        for line in text(&ran).lines().filter(|l| l.starts_with("anonymized")) {
            let (from, to) = line["anonymized".len()..]
                .trim()
                .split_once(" -> ")
                .unwrap();
            // Strict's study list names no procedure; typical keeps it.
            let bytes = std::fs::read(to).unwrap();
            let named = bytes
                .windows(PROCEDURE_MEANING.len())
                .any(|w| w == PROCEDURE_MEANING.as_bytes());
            assert_eq!(
                named,
                profile == "typical",
                "{profile} {from}: procedure named"
            );
            let before = dciodvfy_errors(Path::new(from));
            for error in dciodvfy_errors(Path::new(to)).difference(&before) {
                worse.push(format!("{profile} {from}: {error}"));
            }
        }
    }
    assert!(
        worse.is_empty(),
        "errors the profiles made:\n{}",
        worse.join("\n")
    );
}
